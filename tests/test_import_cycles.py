"""No import circle anywhere in `edge/` (package `__init__` re-exports included).

The graph comes from parsing every module (tools/arch_metrics.py): relative imports
resolved, `from pkg import name` counted as importing `pkg/__init__` and the submodule
`pkg.name` when there is one. A cycle is named module by module so it can be cut.
"""

from __future__ import annotations

from pathlib import Path

from tools.arch_metrics import cycles, import_graph

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_cycle_in_edge() -> None:
    found = cycles(import_graph(ROOT))
    assert not found, "import cycles in edge/:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checker_sees_a_cycle(tmp_path: Path) -> None:
    """The checker itself can fail: a two-module circle via a package re-export is found."""
    pkg = tmp_path / "edge"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from edge.sub import thing\n")
    (pkg / "sub" / "__init__.py").write_text("from .b import thing\n")
    (pkg / "sub" / "b.py").write_text("from .. import a\nthing = 1\n")
    # a type-only import still ties two modules together
    (pkg / "c.py").write_text("import edge.d\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edge.c import X\n"
    )
    assert cycles(import_graph(tmp_path)) == [
        ["edge.a", "edge.sub", "edge.sub.b"],
        ["edge.c", "edge.d"],
    ]
