"""The kiosk's side, inside the arm64 root: install the way a kiosk would, run the CLI.

Everything here runs as aarch64 code under qemu: the venv's python, pip, numpy,
tflite-runtime and LiteRT. Only files are prepared from the host (wheels, photos,
the example config, a signed roster bundle and a config for the check).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tools.arm64.compare import Decision
from tools.arm64.rootfs import CheckError, Chroot

OPT = "/opt/bansos-edge"
VENV = f"{OPT}/venv"
PY = f"{VENV}/bin/python"
EDGE = f"{VENV}/bin/edge"


def _fail(step: str, proc: Any) -> CheckError:
    return CheckError(
        f"arm64 root: {step} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2500:]}"
    )


def stage(root: Path, wheel: Path, wheelhouse: Path, files: dict[str, Path]) -> None:
    """Copy the wheels and the named files into root/opt/bansos-edge."""
    opt = root / OPT.lstrip("/")
    (opt / "wheels").mkdir(parents=True, exist_ok=True)
    for whl in [wheel, *wheelhouse.glob("*.whl")]:
        shutil.copy2(whl, opt / "wheels" / whl.name)
    for rel, src in files.items():
        dest = opt / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def install(ch: Chroot, wheel: Path, extras: tuple[str, ...]) -> list[str]:
    """python3 -m venv, then pip install --no-index; returns `name==version` for each package."""
    proc = ch.run("/usr/bin/python3", "-m", "venv", VENV, timeout=600)
    if proc.returncode != 0:
        raise _fail("python3 -m venv", proc)
    spec = f"{OPT}/wheels/{wheel.name}" + (f"[{','.join(extras)}]" if extras else "")
    proc = ch.run(PY, "-m", "pip", "install", "--no-index", "--find-links", f"{OPT}/wheels",
                  "--disable-pip-version-check", "-q", spec, timeout=1800)  # fmt: skip
    if proc.returncode != 0:
        raise _fail(f"pip install --no-index {spec}", proc)
    proc = ch.run(PY, "-m", "pip", "list", "--format=json", "--disable-pip-version-check")
    if proc.returncode != 0:
        raise _fail("pip list", proc)
    return sorted(f"{p['name']}=={p['version']}" for p in json.loads(proc.stdout))


def cli_smoke(ch: Chroot) -> dict[str, Any]:
    """`edge --help` and `edge config check` on the example config (both must exit 0)."""
    helped = ch.run(EDGE, "--help")
    if helped.returncode != 0 or "verify" not in helped.stdout:
        raise _fail("edge --help", helped)
    checked = ch.run(EDGE, "config", "check", "--no-files", "--config", f"{OPT}/edge.example.toml")
    if checked.returncode != 0:
        raise _fail("edge config check --config edge.example.toml", checked)
    return {"edge --help": helped.returncode, "edge config check": checked.stdout.strip()}


def kiosk_config(runtime: str, hq_signing: str, hq_sealing: str) -> str:
    """An edge.toml for one runtime: own state dir, no GPS or MQTT, two frames per burst
    (the fewest the liveness rule can judge: liveness.min_live_frames = 2)."""
    return (
        f'[device]\nstate_dir = "/var/lib/bansos-edge-{runtime}"\n'
        f'[hq]\nsigning_public_key = "{hq_signing}"\nsealing_public_key = "{hq_sealing}"\n'
        f'[face]\nruntime = "{runtime}"\nburst_frames = 2\n'
        "[gps]\nenabled = false\n[mqtt]\nenabled = false\n"
    )


def verify_cases(
    ch: Chroot, runtime: str, cases: list[tuple[str, str, str, str]]
) -> list[Decision]:
    """keys init, roster import, then `edge verify --image` per (case, kpm, photo, expected)."""
    cfg = f"{OPT}/edge-{runtime}.toml"
    for step in (["keys", "init"], ["roster", "import", f"{OPT}/roster.json"]):
        proc = ch.run(EDGE, *step, "--config", cfg)
        if proc.returncode != 0:
            raise _fail(f"edge {' '.join(step)} ({runtime})", proc)
    out = []
    for case, kpm, photo, expected in cases:
        proc = ch.run(EDGE, "verify", "--kpm", kpm, "--officer", "OFF-ARM64", "--image",
                      f"{OPT}/{photo}", "--json", "--config", cfg)  # fmt: skip
        try:
            answer = json.loads(proc.stdout)
        except ValueError:
            raise _fail(f"edge verify --image ({runtime}, {case})", proc) from None
        score = answer.get("score")
        out.append(Decision(runtime, case, expected, 0 if expected == "match" else 1,
                            answer.get("decision"), proc.returncode,
                            float(score) if score is not None else None))  # fmt: skip
    return out


def probe(ch: Chroot, runtimes: tuple[str, ...], labels: list[str]) -> dict[str, Any]:
    """tools/arm64/probe.py run by the root's venv python on the staged photos."""
    args = [f"{lb}={OPT}/photos/{lb}" for lb in labels]
    proc = ch.run(PY, f"{OPT}/probe.py", ",".join(runtimes), *args, timeout=1800)
    if proc.returncode != 0:
        raise _fail("probe.py", proc)
    result: dict[str, Any] = json.loads(proc.stdout)
    if result.get("machine") != "aarch64":
        raise CheckError(f"probe in the root ran on {result.get('machine')!r}, not aarch64")
    return result
