"""The kiosk wheel carries the kiosk and the contract, never HQ, the demo's CA or eval code.

Builds the wheels the way the Ansible wheelhouse role does (`pip wheel --no-deps`), then
runs the kiosk's `edge` from the unpacked kiosk wheel alone (the dev venv's dependencies,
without either bansos distribution): the HQ/tools commands are absent and say where they
live. Fails before issue 21: the kiosk wheel held edge/hq, edge/demo and edge/infer/evaluate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from edge.cli import extras as cli_extras
from edge.cli import main
from edge.infer.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


# a build from the working tree would reuse its build/lib, stale files included
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def _build(tree: Path, out: Path) -> Path:
    """`pip wheel --no-deps` (as the wheelhouse role runs it) on a clean copy of `tree`."""
    source = out / "src"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE, symlinks=True)
    source = source / tree.relative_to(REPO)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")  # the copy's own build/ stays under out/src
    return wheel


@pytest.fixture(scope="module")
def kiosk_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(REPO, tmp_path_factory.mktemp("kiosk-wheel"))


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return [n for n in z.namelist() if not n.endswith("/")]


def test_kiosk_wheel_holds_no_hq_demo_or_eval(kiosk_wheel: Path) -> None:
    names = _names(kiosk_wheel)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"edge", "bansos_contract", kiosk_wheel.name.split("-py3")[0] + ".dist-info"}
    forbidden = [
        n
        for n in names
        if n.startswith(("edge/hq/", "edge/demo/", "edge_hq/", "edge_tools/"))
        or Path(n).name in {"evaluate.py", "pad_eval.py", "det_plot.py", "pki.py", "hq_cmd.py"}
        or Path(n).name in {"demo_cmd.py", "liveness_cmd.py", "eval_cmd.py"}
        or n.endswith((".crt", ".key", ".pem"))
    ]
    assert forbidden == []


def test_kiosk_wheel_holds_models_contract_and_samples(kiosk_wheel: Path) -> None:
    names = set(_names(kiosk_wheel))
    manifest = load_manifest()
    models = {f"edge/infer/models/{m.path.name}" for m in manifest.all_entries()}
    models.add("edge/infer/models/models.json")
    assert models <= names, sorted(models - names)
    contract = {f"bansos_contract/{m}.py" for m in ("ids", "topics", "acks", "wire", "canonical")}
    assert contract | {"bansos_contract/utc.py", "edge/samples/track.nmea"} <= names
    with zipfile.ZipFile(kiosk_wheel) as z:
        points = next(n for n in z.namelist() if n.endswith("entry_points.txt"))
        text = z.read(points).decode()
    assert "bansos_edge.commands" not in text and "edge = edge.cli:main" in text


def test_hq_wheel_holds_hq_and_tools_only(tmp_path: Path) -> None:
    names = _names(_build(REPO / "hq", tmp_path))
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"edge_hq", "edge_tools"}
    assert "edge_tools/demo/pki.py" in names and "edge_tools/evaluation/evaluate.py" in names


def _kiosk_python(wheel: Path, root: Path) -> tuple[list[str], dict[str, str]]:
    """A Python that sees the unpacked kiosk wheel and the venv's third-party packages only."""
    unpacked = root / "wheel"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(unpacked)
    shadow = root / "site"
    shadow.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        lower = entry.name.lower()
        if lower.startswith(("bansos", "__editable__", "_bansos")) or lower.endswith(".pth"):
            continue
        (shadow / entry.name).symlink_to(entry)
    env = {**os.environ, "PYTHONPATH": f"{unpacked}{os.pathsep}{shadow}"}
    env.pop("BANSOS_EDGE_CONFIG", None)
    return [sys.executable, "-S", "-c"], env


def test_kiosk_install_lacks_hq_commands_and_says_so(kiosk_wheel: Path, tmp_path: Path) -> None:
    cmd, env = _kiosk_python(kiosk_wheel, tmp_path)
    probe = (
        "import importlib.util, edge\n"
        "print(edge.__file__)\n"
        "names = ('edge_hq', 'edge_tools', 'edge.hq', 'edge.demo', 'edge.infer.evaluate')\n"
        "print([m for m in names if importlib.util.find_spec(m)])\n"
    )
    out = subprocess.run(
        [*cmd, probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    where, missing = out.stdout.splitlines()
    assert where.startswith(str(tmp_path / "wheel")) and missing == "[]"

    run = "import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))"
    helped = subprocess.run(
        [*cmd, run, "--help"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert helped.returncode == 0, helped.stderr
    listed = helped.stdout.split("Commands:")[1]
    assert "verify" in listed
    for name in ("hq", "demo", "eval", "liveness"):
        assert f"\n  {name} " not in listed
        done = subprocess.run(
            [*cmd, run, name, "anything", "--json"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2, done.stderr
        assert f"edge: error: `edge {name}`" in done.stderr
        assert "ships in the bansos-edge-hq distribution" in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["hq", "demo", "eval", "liveness"])
def test_dev_install_offers_the_extras(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--help"]) == 0
    assert f"Usage: edge {name}" in capsys.readouterr().out


def test_unknown_command_is_still_clicks_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nonsense"]) == 2
    assert "No such command" in capsys.readouterr().err
    assert "nonsense" not in cli_extras.KNOWN_EXTRAS
