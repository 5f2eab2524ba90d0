"""What a kiosk installs: the project wheel built from the checkout, and its dependencies
as aarch64 wheels downloaded on the host (pip under qemu is far slower), cached by the
exact requirement list. A dependency without an aarch64 build is a clear CheckError."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

from tools.arm64.rootfs import CheckError

PYTHON = "3.11"  # bookworm's python3
GLIBC_MINOR = 36  # bookworm's glibc 2.36
EXTRAS = ("litert",)  # the README's second runtime on the Pi
STAMP = ".bansos-wheelhouse.json"
_SKIP = {
    ".venv",
    ".git",
    "build",
    "dist",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "__pycache__",
}


def platforms() -> list[str]:
    """Every platform tag a bookworm arm64 pip accepts (pip does not widen --platform itself)."""
    tags = [f"manylinux_2_{m}_aarch64" for m in range(GLIBC_MINOR, 16, -1)]
    return [*tags, "manylinux2014_aarch64", "linux_aarch64"]


def build_project_wheel(repo: Path, out: Path) -> Path:
    """`pip wheel --no-deps .` on a copy of the checkout (the checkout is left untouched)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="arm64-src-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(
            repo,
            src,
            ignore=lambda d, names: [n for n in names if n in _SKIP or n.endswith(".egg-info")],
        )
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise CheckError(
            f"pip wheel --no-deps {repo} failed:\n{(proc.stdout + proc.stderr)[-2000:]}"
        )
    wheels = sorted(out.glob("bansos_edge-*.whl"))
    if not wheels:
        raise CheckError(f"pip wheel made no bansos_edge wheel in {out}")
    return wheels[-1]


def requirements(wheel: Path, extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """The wheel's Requires-Dist that apply on a Pi (aarch64 Linux, CPython 3.11, extras)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode("utf-8")
    env = {
        "platform_machine": "aarch64",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "python_version": PYTHON,
        "python_full_version": f"{PYTHON}.2",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    out = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        marker = req.marker or Marker("python_version >= '3'")
        if any(marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
            req.marker = None
            out.append(str(req))
    return sorted(out, key=str.lower)


def _key(reqs: list[str], find_links: list[Path]) -> str:
    blob = json.dumps(
        {"reqs": reqs, "platforms": platforms(), "links": [str(p) for p in find_links]}
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def not_aarch64(wheel_names: list[str]) -> list[str]:
    """Wheels in the list that a Pi cannot use (built for another machine)."""
    bad = []
    for name in wheel_names:
        _, _, _, tags = parse_wheel_filename(name)
        if not any(t.platform == "any" or t.platform.endswith("aarch64") for t in tags):
            bad.append(name)
    return bad


def missing_requirement(pip_output: str) -> str | None:
    """The requirement pip could not satisfy, from its error text."""
    m = re.search(r"Could not find a version that satisfies the requirement (\S+)", pip_output)
    return m.group(1) if m else None


def _elsewhere(req: str, links: list[Path]) -> str:
    """What pip finds for req on this (x86_64) host instead, to make the error concrete."""
    with tempfile.TemporaryDirectory(prefix="arm64-probe-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-d", tmp, req]  # fmt: skip
        for link in links:
            cmd += ["--find-links", str(link)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        found = sorted(p.name for p in Path(tmp).glob("*.whl"))
    if proc.returncode == 0 and found:
        return "it has a build for this x86_64 host: " + ", ".join(found)
    return "and none for this x86_64 host either: is the name right?"


def wheelhouse(
    cache: Path, reqs: list[str], find_links: list[Path] | None = None
) -> tuple[Path, float | None]:
    """A cached folder of aarch64 wheels for reqs and everything they need."""
    links = list(find_links or [])
    dest = cache / f"wheels-{_key(reqs, links)}"
    if (dest / STAMP).is_file():
        return dest, None
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", PYTHON,
           "--implementation", "cp", "-d", str(partial)]  # fmt: skip
    for tag in platforms():
        cmd += ["--platform", tag]
    for link in links:
        cmd += ["--find-links", str(link)]
    started = time.monotonic()
    proc = subprocess.run([*cmd, *reqs], capture_output=True, text=True, timeout=900)
    took = time.monotonic() - started
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        which = missing_requirement(proc.stdout + proc.stderr)
        if which:
            raise CheckError(
                f"dependency {which} has no aarch64 build for CPython {PYTHON} on glibc "
                f"2.{GLIBC_MINOR} (Raspberry Pi OS / Debian bookworm): pip download "
                "--only-binary=:all: found no wheel for manylinux_2_17..2_36_aarch64 "
                f"({_elsewhere(which, links)}); a kiosk cannot install it"
            )
        raise CheckError(f"pip download for aarch64 failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    bad = not_aarch64([p.name for p in partial.glob("*.whl")])
    if bad:
        shutil.rmtree(partial, ignore_errors=True)
        raise CheckError(f"not built for aarch64: {', '.join(bad)}")
    (partial / STAMP).write_text(
        json.dumps({"reqs": reqs, "seconds": round(took, 1)}), encoding="utf-8"
    )
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest, took
