"""Architecture figures for issue 21, before and after: sizes, raw store connections, import cycles.

    python tools/arch_metrics.py [ROOT]   (ROOT: the repository, default: this one)

Prints the largest class and function in `edge/` (lines), raw `<store>.conn` uses outside
the store, the import cycles among `edge` modules, and the files per package. The import
graph is the one `tests/test_import_cycles.py` checks: every module parsed with `ast`,
relative imports resolved, `from pkg import name` counted as importing `pkg/__init__` and,
when `name` is a submodule, that submodule too. Imports under `if TYPE_CHECKING:` count:
they do not run, but a module that names another's type depends on it all the same.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    """`edge/uplink/service.py` -> `edge.uplink.service`; a package's `__init__` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path, package: str = "edge") -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def import_graph(root: Path, package: str = "edge") -> dict[str, set[str]]:
    """module -> the `package` modules it imports (at run time)."""
    mods = modules(root, package)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]  # `import a.b` -> a.b
            else:
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets.append(target)
                targets += [f"{target}.{a.name}" for a in node.names]
            for dep in targets:
                if dep in mods and dep != name:
                    graph[name].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _span(node: ast.AST) -> int:
    return int(getattr(node, "end_lineno", 0) or 0) - int(getattr(node, "lineno", 0) or 0) + 1


def largest(root: Path, package: str = "edge") -> tuple[tuple[int, str], tuple[int, str]]:
    """((lines, name) of the largest class, (lines, name) of the largest function)."""
    best_cls, best_fn = (0, ""), (0, "")
    for name, path in modules(root, package).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                best_cls = max(best_cls, (_span(node), f"{name}.{node.name}"))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                best_fn = max(best_fn, (_span(node), f"{name}.{node.name}"))
    return best_cls, best_fn


def raw_conn_uses(root: Path, package: str = "edge") -> Counter[str]:
    """`<something store>.conn` attribute uses per module outside the store itself."""
    uses: Counter[str] = Counter()
    for name, path in modules(root, package).items():
        if name == f"{package}.store" or name.startswith(f"{package}.store."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_conn = isinstance(node, ast.Attribute) and node.attr == "conn"
            if is_conn and "store" in ast.unparse(node.value).lower():  # type: ignore[attr-defined]
                uses[name] += 1
    return uses


def files_per_package(root: Path, package: str = "edge") -> dict[str, int]:
    counts: Counter[str] = Counter()
    for path in (root / package).rglob("*.py"):
        counts[".".join(path.parent.relative_to(root).parts)] += 1
    return dict(sorted(counts.items()))


def main(argv: list[str]) -> int:
    root = Path(argv[1]).resolve() if len(argv) > 1 else Path(__file__).resolve().parents[1]
    cls, fn = largest(root)
    print(f"largest class: {cls[1]} ({cls[0]} lines)")
    print(f"largest function: {fn[1]} ({fn[0]} lines)")
    conn = raw_conn_uses(root)
    print(f"raw store.conn uses outside the store: {sum(conn.values())} in {len(conn)} modules")
    for mod, n in sorted(conn.items()):
        print(f"  {mod}: {n}")
    found = cycles(import_graph(root))
    print(f"import cycles: {len(found)}")
    for comp in found:
        print("  " + " <-> ".join(comp))
    print("files per package:")
    for pkg, n in files_per_package(root).items():
        print(f"  {pkg}: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
