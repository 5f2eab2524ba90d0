"""The shipped unit passes systemd's own checks and keeps its hardening."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

UNIT = REPO / "systemd" / "bansos-edge.service"


def _unit_with_real_exec(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's `edge` (the Pi path is not here)."""
    edge_bin = Path(sys.executable).parent / "edge"
    assert edge_bin.exists(), "the package must be installed (make setup)"
    text = UNIT.read_text().replace("/opt/bansos-edge/venv/bin/edge", str(edge_bin))
    copy = tmp_path / "bansos-edge.service"
    copy.write_text(text)
    return copy


def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze is installed by make setup"
    unit = _unit_with_real_exec(tmp_path)
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 on some errors, so any output at all fails the test
    assert proc.returncode == 0
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr


def test_security_exposure_at_most_2_5(tmp_path: Path) -> None:
    unit = _unit_with_real_exec(tmp_path)
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert match, proc.stdout[-2000:] + proc.stderr
    assert float(match.group(1)) <= 2.5


def test_unit_keeps_the_contract() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "User=bansos-edge",
        "ProtectSystem=strict",
        "StateDirectory=bansos-edge",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "SupplementaryGroups=video dialout",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert line in text, line
