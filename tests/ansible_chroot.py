"""Helpers for the Ansible tests: a real Debian root made by debootstrap, entered by chroot.

The root stands in for a kiosk's or the broker's SD card. Nothing in it is started by
package scripts (policy-rc.d says no), and no mount is left behind (checked and undone).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
SOURCES = [Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d")]
POLICY_RC_D = "#!/bin/sh\n# Image build: package scripts must not start services.\nexit 101\n"


class ChrootError(RuntimeError):
    """debootstrap or the mirror is not usable: the test must fail, loudly."""


def debian_mirror() -> str:
    """The Debian mirror the host's apt uses (one-line or deb822 sources), for SUITE."""
    override = os.environ.get("BANSOS_DEBIAN_MIRROR")
    if override:
        return override
    files: list[Path] = []
    for source in SOURCES:
        if source.is_dir():
            files.extend(sorted(source.glob("*.list")) + sorted(source.glob("*.sources")))
        elif source.is_file():
            files.append(source)
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(.+)$", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1).split()[0]
        for line in text.splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s", line)
            if m and m.group(2) == SUITE:
                return m.group(1)
    raise ChrootError(
        f"no Debian {SUITE} mirror in {', '.join(map(str, SOURCES))}; set BANSOS_DEBIAN_MIRROR"
    )


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        for line in fh:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_all(path: Path) -> None:
    """Undo any mount debootstrap (or a failed step) left below `path`."""
    for point in mounts_under(path):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)


def debootstrap(root: Path, include: list[str], timeout: float = 420) -> float:
    """Make a minbase bookworm root at `root`; returns the seconds it took."""
    exe = shutil.which("debootstrap")
    if exe is None:
        raise ChrootError("debootstrap is not installed (apt-get install debootstrap)")
    mirror = debian_mirror()
    started = time.monotonic()
    cmd = [exe, "--variant=minbase", f"--include={','.join(include)}", SUITE, str(root), mirror]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        unmount_all(root)
    if proc.returncode != 0:
        raise ChrootError(
            f"debootstrap {SUITE} from {mirror} failed ({proc.returncode}):\n"
            + (proc.stdout + proc.stderr)[-3000:]
        )
    return time.monotonic() - started


def prepare_image(root: Path) -> None:
    """What an image build does before configuration management: no service starts."""
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D, encoding="ascii")
    policy.chmod(0o755)


def clone_root(base: Path, dest: Path) -> Path:
    """A copy of the cached base root (hard links would share inodes with the cache)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(dest)], check=True, timeout=300)
    return dest


@contextmanager
def kernel_mounts(root: Path) -> Iterator[Path]:
    """/proc, /sys and /dev in the root while a real program (a browser) runs there."""
    try:
        for argv in (
            ["mount", "-t", "proc", "proc", str(root / "proc")],
            ["mount", "-t", "sysfs", "sysfs", str(root / "sys")],
            ["mount", "--rbind", "/dev", str(root / "dev")],
            ["mount", "--make-rslave", str(root / "dev")],
        ):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if proc.returncode != 0:
                raise ChrootError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
        yield root
    finally:
        unmount_all(root)


def in_root(
    root: Path, *argv: str, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a command inside the root (as root, plain chroot, no mounts)."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
    }
    return subprocess.run(
        ["chroot", str(root), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=check,
    )


@dataclass
class Recap:
    """One host's line of an ansible PLAY RECAP."""

    ok: int
    changed: int
    unreachable: int
    failed: int


def play_recap(output: str) -> dict[str, Recap]:
    """Parse the PLAY RECAP block of ansible-playbook's output."""
    recap: dict[str, Recap] = {}
    block = output.rsplit("PLAY RECAP", 1)[-1]
    for m in re.finditer(
        r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", block, re.M
    ):
        recap[m.group(1)] = Recap(*(int(m.group(i)) for i in range(2, 6)))
    if not recap:
        raise AssertionError("no PLAY RECAP in the output:\n" + output[-3000:])
    return recap
