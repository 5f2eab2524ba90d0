"""`edge gps` as a real process against a real gpsd (gpsfake with the bundled track)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import EXIT_MISSING, EXIT_NEGATIVE
from tests.conftest import REPO, WriteConfig
from tests.support.gpsd import gpsfake_server
from tests.support.helpers import free_port

TRACK = REPO / "edge" / "samples" / "track.nmea"
# `edge gps` is registered by the lead in edge/cli/__init__.py; until then add it here
SHIM = (
    "import sys; from edge.cli import cli, main; from edge.cli.gps_cmd import gps_cmd; "
    "'gps' in cli.commands or cli.add_command(gps_cmd); sys.exit(main(sys.argv[1:]))"
)


def edge_gps(conf: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SHIM, "--config", str(conf), "gps", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=dict(os.environ),
    )


def test_once_json_prints_the_fix(write_config: WriteConfig) -> None:
    with gpsfake_server(TRACK) as fake:
        conf = write_config(gps={"enabled": True, "host": fake.host, "port": fake.port})
        r = edge_gps(conf, "--once", "--timeout", "60", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    fix = doc["fix"]
    assert -7.716 < fix["lat"] < -7.715 and 110.364 < fix["lon"] < 110.366
    assert fix["mode"] in (2, 3) and fix["stale"] is False
    assert fix["eph_m"] is None or fix["eph_m"] > 0
    assert doc["state"] in ("fix_2d", "fix_3d")
    # the track is stamped 2026-11-02 02:00 UTC, not this machine's time: GPS time is
    # used, and the output says the system clock is off
    assert fix["time"] is not None  # --once waits for the epoch's RMC after its GGA
    assert doc["clock"]["source"] == "gps"
    assert "off by" in doc["clock"]["note"] and abs(doc["clock"]["offset_s"]) > 2
    assert doc["gpsd"] == f"127.0.0.1:{fake.port}"


@pytest.mark.slow
def test_stream_prints_lines_until_timeout(write_config: WriteConfig) -> None:
    with gpsfake_server(TRACK) as fake:
        conf = write_config(gps={"enabled": True, "host": fake.host, "port": fake.port})
        r = edge_gps(conf, "--timeout", "6")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("fix ")]
    assert len(lines) >= 2, r.stdout
    assert "110.36" in lines[-1] and "clock" in lines[-1]


def test_gpsd_unreachable_is_exit_3(write_config: WriteConfig) -> None:
    port = free_port()
    conf = write_config(gps={"enabled": True, "port": port})
    r = edge_gps(conf, "--once", "--json")
    assert r.returncode == EXIT_MISSING
    assert f"127.0.0.1:{port}" in r.stderr and "cannot connect" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_gps_disabled_is_exit_3(write_config: WriteConfig) -> None:
    conf = write_config(gps={"enabled": False})
    r = edge_gps(conf, "--once")
    assert r.returncode == EXIT_MISSING and "gps.enabled is false" in r.stderr


@pytest.mark.slow
def test_no_fix_within_timeout_is_exit_1(write_config: WriteConfig, tmp_path: Path) -> None:
    """gpsd is up but the receiver has no fix (only no-fix sentences): a negative result."""
    log = tmp_path / "nofix.nmea"
    lines = TRACK.read_text().splitlines()[1:13]  # the first two epochs: no fix yet
    log.write_text("\r\n".join(lines) + "\r\n")
    with gpsfake_server(log) as fake:
        conf = write_config(gps={"enabled": True, "host": fake.host, "port": fake.port})
        r = edge_gps(conf, "--once", "--timeout", "3", "--json")
    assert r.returncode == EXIT_NEGATIVE, r.stderr
    doc = json.loads(r.stdout)
    assert doc["fix"] is None and doc["state"] in ("no_fix", "disconnected")
