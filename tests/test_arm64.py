"""The arm64 check (tools/arm64_check.py) end to end: a Debian bookworm arm64 root under
qemu-user-static, the kiosk install from wheels, `edge` run inside it, and the embeddings
compared with this host's. It fails (never skips) when qemu or binfmt_misc is missing.

CI runs the reduced form (4 photos); the full one is `python tools/arm64_check.py`.
Runtime on 2 cores: 489 s measured from a cold cache (debootstrap under emulation ~5 min of
it), ~4 min warm (cache: /var/cache/bansos-edge-arm64 or $BANSOS_ARM64_CACHE).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.data import BUNDLED_FACES
from tests.support.faces import PERSON
from tools.arm64 import wheels
from tools.arm64.compare import compare, cosine, min_cosine_for
from tools.arm64.rootfs import binfmt_ready

pytestmark = pytest.mark.slow  # arm64 root under qemu, 4-8 min

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "tools" / "arm64_check.py"
# the bundled photos: a genuine pair of one person, the other person as the impostor
BUNDLED = ("--faces-dir", str(BUNDLED_FACES), "--genuine", PERSON)


def _check(*args: str, timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), *BUNDLED, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    binfmt_ready()  # raises with what to install: missing emulation is a failure, not a skip
    proc = _check("--photos", "4", "--json")
    assert proc.stdout.strip(), f"no report (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(proc.stdout)
    assert "error" not in result, result["error"]
    result["exit_code"] = proc.returncode
    return result


@pytest.mark.timeout(2700)
def test_kiosk_installs_and_runs_on_arm64(report: dict[str, Any]) -> None:
    names = {p.split("==")[0].lower() for p in report["packages"]}
    assert {"bansos-edge", "tflite-runtime", "ai-edge-litert", "numpy", "pynacl", "pillow"} <= names
    assert "OK" in report["cli"]["edge config check"]
    assert report["cli"]["edge --help"] == 0


@pytest.mark.timeout(2700)
def test_genuine_matches_and_impostor_does_not_on_arm64(report: dict[str, Any]) -> None:
    got = {(d["runtime"], d["case"]): (d["decision"], d["exit_code"]) for d in report["decisions"]}
    for rt in ("tflite_runtime", "litert"):
        assert got[(rt, "genuine")] == ("match", 0)
        assert got[(rt, "impostor")] == ("no_match", 1)


@pytest.mark.timeout(2700)
def test_arm64_embeddings_match_x86_for_every_model_and_runtime(report: dict[str, Any]) -> None:
    seen = {(m["model"], m["runtime"]) for m in report["models"]}
    assert seen == {(m, r) for m in ("detector", "embedder") for r in ("tflite_runtime", "litert")}
    for m in report["models"]:
        assert m["photos"] >= 4 and not m["problems"], m
        assert m["min_cosine"] >= min_cosine_for(m["model"], m["runtime"]), m
    assert report["ok"] and report["exit_code"] == 0


def _fake_x86_wheel(folder: Path) -> Path:
    """A valid wheel built only for x86_64, as some packages on PyPI are."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "x86only-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x86only/__init__.py", "")
        zf.writestr(
            "x86only-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: x86only\nVersion: 1.0\n"
        )
        zf.writestr(
            "x86only-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-manylinux_2_17_x86_64\n",
        )
        zf.writestr("x86only-1.0.dist-info/RECORD", "")
    return path


@pytest.mark.timeout(600)
def test_a_dependency_without_an_aarch64_build_fails_clearly(tmp_path: Path) -> None:
    binfmt_ready()
    links = tmp_path / "links"
    _fake_x86_wheel(links)
    proc = _check("--cache-dir", str(tmp_path / "cache"), "--extra-requirement", "x86only==1.0",
                  "--find-links", str(links), timeout=600)  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "dependency x86only==1.0 has no aarch64 build" in proc.stderr
    assert "it has a build for this x86_64 host: x86only-1.0-cp311" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "cache").glob("rootfs-*")), "failed before making a root"


def test_not_aarch64_and_requirements_from_the_wheel(tmp_path: Path) -> None:
    assert wheels.not_aarch64(
        ["a-1-py3-none-any.whl", "b-1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
         "c-1-cp311-cp311-manylinux_2_17_x86_64.whl", "d-1-cp311-cp311-win_amd64.whl"]
    ) == ["c-1-cp311-cp311-manylinux_2_17_x86_64.whl", "d-1-cp311-cp311-win_amd64.whl"]  # fmt: skip
    whl = tmp_path / "k-1-py3-none-any.whl"
    meta = "\n".join([
        "Metadata-Version: 2.1", "Name: k", "Version: 1",
        "Requires-Dist: numpy<2", "Requires-Dist: tflite-runtime; platform_machine == 'aarch64'",
        "Requires-Dist: winonly; sys_platform == 'win32'", "Requires-Dist: ai-edge-litert; extra == 'litert'",
        "Requires-Dist: psycopg; extra == 'hq'",
    ])  # fmt: skip
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("k-1.dist-info/METADATA", meta)
    assert wheels.requirements(whl) == ["ai-edge-litert", "numpy<2", "tflite-runtime"]


def _probe(emb: np.ndarray, raw: np.ndarray) -> dict[str, Any]:
    b = lambda a: base64.b64encode(np.asarray(a, "<f4").tobytes()).decode()  # noqa: E731
    return {"detector_raw": b(raw), "faces": 1, "box": [1.0, 2.0, 30.0, 30.0],
            "landmarks": [0.0] * 10, "score": 0.9, "embedding": b(emb)}  # fmt: skip


def test_compare_flags_an_embedding_below_the_bar() -> None:
    rng = np.random.default_rng(7)
    e = rng.normal(size=128)
    e /= np.linalg.norm(e)
    raw = rng.normal(size=50)
    near = e + rng.normal(size=128) * 1e-4
    far = e + rng.normal(size=128) * 0.08  # cosine ~0.997: what a real divergence looks like
    host = {"runtimes": {"litert": {"photos": {"p": _probe(e, raw)}}}}
    good = {"runtimes": {"litert": {"photos": {"p": _probe(near, raw)}}}}
    bad = {"runtimes": {"litert": {"photos": {"p": _probe(far, raw)}}}}
    assert all(m.ok for m in compare(host, good))
    det, emb = compare(host, bad)
    assert (
        det.ok
        and not emb.ok
        and emb.min_cosine == pytest.approx(cosine(e, far / np.linalg.norm(far)))
    )
    missing = compare(host, {"runtimes": {}})
    assert [m.ok for m in missing] == [False, False] and "did not run on arm64" in missing[
        0
    ].problems[0]


def test_compare_holds_the_model_and_the_chain_to_their_own_bars() -> None:
    """The embedder is judged on the same input on both machines; the detect-align-embed
    chain (each machine's own landmarks) has its own, looser bar, and still fails below it."""
    rng = np.random.default_rng(11)
    e = rng.normal(size=128)
    e /= np.linalg.norm(e)
    raw = rng.normal(size=50)

    def probe(chain: np.ndarray, fixed: np.ndarray) -> dict[str, Any]:
        b64 = base64.b64encode(np.asarray(fixed, "<f4").tobytes()).decode()
        return {**_probe(chain, raw), "embedding_fixed": b64}

    jitter = e + rng.normal(size=128) * 0.005  # cosine ~0.998: landmark jitter, not the model
    broken = e + rng.normal(size=128) * 0.2  # cosine ~0.4: a real divergence
    host = {"runtimes": {"litert": {"photos": {"p": probe(e, e)}}}}
    jittery = {"runtimes": {"litert": {"photos": {"p": probe(jitter, e)}}}}
    assert all(m.ok for m in compare(host, jittery))
    _, emb = compare(host, jittery)
    assert emb.min_cosine == pytest.approx(1.0)
    assert emb.chain_min_cosine is not None and 0.995 < emb.chain_min_cosine < 0.999
    _, emb = compare(host, {"runtimes": {"litert": {"photos": {"p": probe(broken, e)}}}})
    assert not emb.ok and "chain" in emb.problems[0]
    _, emb = compare(host, {"runtimes": {"litert": {"photos": {"p": probe(e, broken)}}}})
    assert not emb.ok and emb.min_cosine < 0.999


def test_the_hybrid_int8_bar_is_for_tflite_runtime_only() -> None:
    """0.9985 is inside tflite_runtime's arch-specific hybrid kernels, not inside LiteRT's."""
    rng = np.random.default_rng(5)
    e = rng.normal(size=128)
    e /= np.linalg.norm(e)
    raw = rng.normal(size=50)
    d = rng.normal(size=128)
    d -= (d @ e) * e
    d /= np.linalg.norm(d)
    off = 0.9985 * e + np.sqrt(1 - 0.9985**2) * d  # cosine 0.9985 to e, exactly
    b64 = lambda a: base64.b64encode(np.asarray(a, "<f4").tobytes()).decode()  # noqa: E731

    def run(rt: str) -> bool:
        host = {"runtimes": {rt: {"photos": {"p": {**_probe(e, raw), "embedding_fixed": b64(e)}}}}}
        arm = {"runtimes": {rt: {"photos": {"p": {**_probe(e, raw), "embedding_fixed": b64(off)}}}}}
        return compare(host, arm)[1].ok

    assert run("tflite_runtime") and not run("litert")
