"""The Debian bookworm arm64 root: made once by debootstrap under qemu, cached, cloned per run.

A cached root is valid only when its stamp (written last) matches the recipe, so an
interrupted debootstrap is never reused. Runs get a copy, so the cache stays clean.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

from tests.ansible_chroot import SUITE, debian_mirror, unmount_all

ARCH = "arm64"
INCLUDE = ("python3", "python3-venv")
STAMP = ".bansos-arm64-root.json"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
RECIPE_VERSION = 1


class CheckError(RuntimeError):
    """The check cannot run or failed a step: the message says which and why."""


def binfmt_ready() -> str:
    """The aarch64 binfmt handler's interpreter, or a CheckError saying what to set up."""
    entry = BINFMT / "qemu-aarch64"
    if not (BINFMT / "status").exists():
        raise CheckError(
            f"{BINFMT} is not mounted: mount -t binfmt_misc binfmt_misc {BINFMT} "
            "(then apt-get install qemu-user-static)"
        )
    if not entry.exists():
        raise CheckError(
            f"no aarch64 binfmt handler in {BINFMT}: apt-get install qemu-user-static "
            "(and update-binfmts --enable qemu-aarch64)"
        )
    text = entry.read_text(encoding="ascii", errors="replace")
    if not text.startswith("enabled"):
        raise CheckError(f"{entry} is disabled: update-binfmts --enable qemu-aarch64")
    flags = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("flags:")), ""
    )
    if "F" not in flags:
        raise CheckError(
            f"{entry} lacks the F flag (interpreter must be preloaded to work in a chroot): "
            "reinstall qemu-user-static from Debian"
        )
    return next(
        (ln.split(None, 1)[1] for ln in text.splitlines() if ln.startswith("interpreter")), ""
    )


def recipe(mirror: str) -> dict[str, object]:
    return {
        "v": RECIPE_VERSION,
        "suite": SUITE,
        "arch": ARCH,
        "include": list(INCLUDE),
        "mirror": mirror,
    }


def root_dir(cache: Path, mirror: str) -> Path:
    key = hashlib.sha256(json.dumps(recipe(mirror), sort_keys=True).encode()).hexdigest()[:12]
    return cache / f"rootfs-{SUITE}-{ARCH}-{key}"


def cached_root(cache: Path, timeout: float = 1800) -> tuple[Path, float | None]:
    """The valid cached root (made now when missing); seconds spent making it, or None."""
    mirror = debian_mirror()
    root = root_dir(cache, mirror)
    stamp = root / STAMP
    want = recipe(mirror)
    if stamp.is_file():
        try:
            if (
                json.loads(stamp.read_text(encoding="utf-8")).get("recipe") == want
                and (root / "usr/bin/python3").exists()
            ):
                return root, None
        except ValueError:
            pass
    exe = shutil.which("debootstrap")
    if exe is None:
        raise CheckError("debootstrap is not installed (apt-get install debootstrap)")
    binfmt_ready()
    cache.mkdir(parents=True, exist_ok=True)
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        unmount_all(partial)
        shutil.rmtree(partial)
    started = time.monotonic()
    cmd = [
        exe,
        f"--arch={ARCH}",
        "--variant=minbase",
        f"--include={','.join(INCLUDE)}",
        SUITE,
        str(partial),
        mirror,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CheckError(f"debootstrap --arch={ARCH} {SUITE} took over {timeout:.0f} s") from None
    finally:
        unmount_all(partial)
    if proc.returncode != 0:
        raise CheckError(
            f"debootstrap --arch={ARCH} {SUITE} from {mirror} failed ({proc.returncode}):\n"
            + (proc.stdout + proc.stderr)[-3000:]
        )
    took = time.monotonic() - started
    (partial / STAMP).write_text(
        json.dumps({"recipe": want, "seconds": round(took, 1)}), encoding="utf-8"
    )
    if root.exists():
        unmount_all(root)
        shutil.rmtree(root)
    partial.rename(root)
    return root, took


def clone(base: Path, dest: Path) -> Path:
    """A private copy of the cached root for one run."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(dest)], check=True, timeout=600)
    return dest


# What a Pi's kernel says about its CPU, per qemu CPU model: (MIDR part, hwcap features, board).
PI_CPUS = {
    "cortex-a72": ("0xd08", "fp asimd evtstrm crc32 cpuid", "Raspberry Pi 4 Model B"),
    "cortex-a76": (
        "0xd0b",
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
        "dcpop asimddp",
        "Raspberry Pi 5 Model B",
    ),
}
PI_CORES = 4


def pi_cpuinfo(cpu: str) -> str:
    """/proc/cpuinfo as a Pi with this core shows it (qemu-user would show the x86 host's)."""
    part, features, board = PI_CPUS[cpu]
    block = (
        "processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {f}\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {p}\nCPU revision\t: 3\n\n"
    )
    cores = "".join(block.format(i=i, f=features, p=part) for i in range(PI_CORES))
    return cores + f"Hardware\t: BCM2835\nModel\t\t: {board}\n"


class Chroot:
    """A cloned root entered by chroot, its CPU described as the emulated Pi's; unmounted on exit.

    qemu-user passes the x86 host's /proc/cpuinfo and /sys through. Given those, LiteRT's
    XNNPACK (through the cpuinfo library) crashes; without /sys it silently falls back to
    the reference kernels, which is not what a Pi runs. So the root gets /proc, with a Pi's
    /proc/cpuinfo bound over it, and a Pi's CPU list (/sys/devices/system/cpu), matching
    the core qemu emulates (QEMU_CPU).
    """

    def __init__(self, root: Path, cpu: str = "cortex-a72") -> None:
        if cpu not in PI_CPUS:
            raise CheckError(f"qemu CPU {cpu!r}: expected one of {', '.join(PI_CPUS)}")
        self.root = root
        self.cpu = cpu  # QEMU_CPU for qemu-user: which ARM core (and so which SIMD) to emulate

    def __enter__(self) -> Chroot:
        cpus = self.root / "sys/devices/system/cpu"
        cpus.mkdir(parents=True, exist_ok=True)
        for name in ("possible", "present", "online"):
            (cpus / name).write_text(f"0-{PI_CORES - 1}\n", encoding="ascii")
        for i in range(PI_CORES):
            (cpus / f"cpu{i}").mkdir(exist_ok=True)
        info = self.root.with_name(self.root.name + ".cpuinfo")
        info.write_text(pi_cpuinfo(self.cpu), encoding="ascii")
        (self.root / "proc").mkdir(exist_ok=True)
        steps = [
            ["mount", "-t", "proc", "proc", str(self.root / "proc")],
            ["mount", "--bind", "-o", "ro", str(info), str(self.root / "proc/cpuinfo")],
        ]
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                unmount_all(self.root)
                raise CheckError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        return self

    def __exit__(self, *exc: object) -> None:
        unmount_all(self.root)

    def run(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the root (aarch64 binaries run through qemu via binfmt)."""
        full = {
            "PATH": "/opt/bansos-edge/venv/bin:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "QEMU_CPU": self.cpu,
            **(env or {}),
        }
        cmd = [shutil.which("chroot") or "/usr/sbin/chroot", str(self.root), *argv]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full)
        except subprocess.TimeoutExpired:
            raise CheckError(
                f"in the arm64 root: {' '.join(argv)} took over {timeout:.0f} s"
            ) from None
