"""`edge doctor` tells the truth about the camera and the clock (issue 19).

A kiosk without [camera] used to verify against the bundled sample faces and doctor
called it healthy; the clock line always said ok.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from edge.capture import clock as clock_mod
from edge.config import CameraConfig, load_config
from edge.doctor import check_camera, check_clock
from tests.conftest import WriteConfig, run_edge
from tests.support.gpsd import gpsfake_server
from tests.support.helpers import REPO

TRACK = REPO / "edge" / "samples" / "track.nmea"


def test_default_camera_is_not_the_replay_of_sample_faces() -> None:
    assert CameraConfig().backend == "picamera2"


def test_config_without_camera_section_does_not_use_sample_faces(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(f'[device]\nstate_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n')
    cfg = load_config(path)
    assert cfg.camera.backend == "picamera2"
    ok, detail = _run(check_camera, cfg)
    assert not ok and "picamera2" in detail  # no camera here: fails, never a sample face


def _run(check: Any, cfg: Any) -> tuple[bool, str]:
    try:
        return check(cfg)  # type: ignore[no-any-return]
    except Exception as exc:  # as run_checks reports it
        return False, f"{type(exc).__name__}: {exc}"


def test_doctor_fails_the_replay_camera_loudly(write_config: WriteConfig) -> None:
    cfg = write_config(camera={"backend": "replay"})
    res = run_edge("--config", str(cfg), "doctor", "--json", timeout=120)
    line = next(c for c in json.loads(res.stdout) if c["check"] == "camera")
    assert line["ok"] is False, line
    assert "REPLAY" in line["detail"] and "SAMPLE faces" in line["detail"], line
    assert res.returncode == 3


def test_edge_run_warns_about_replay(write_config: WriteConfig, tmp_path: Path) -> None:
    """`edge run` logs the warning first thing (here it then stops at a taken port)."""
    import socket

    from edge.keys import init_device_key

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        cfg = write_config(camera={"backend": "replay"}, api={"listen": f"127.0.0.1:{port}"})
        init_device_key(tmp_path / "state" / "device.key")
        res = run_edge("run", "--config", str(cfg), timeout=120)
    finally:
        holder.close()
    assert "camera.backend is replay" in res.stderr and "SAMPLE faces" in res.stderr


# -- clock ------------------------------------------------------------------------
def _no_ntp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_mod, "ntp_synchronized", lambda: False)
    monkeypatch.setattr(clock_mod, "ntp_state", lambda: (False, "test: no NTP"), raising=False)


def test_clock_unsynced_without_gps_or_ntp_fails(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_ntp(monkeypatch)
    cfg = load_config(write_config(gps={"enabled": False}))
    ok, detail = check_clock(cfg)
    assert not ok, detail
    assert "unsynced" in detail and "GPS disabled" in detail


def test_clock_ntp_synchronised_is_ok(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clock_mod, "ntp_state", lambda: (True, "test: timedatectl"))
    cfg = load_config(write_config(gps={"enabled": False}))
    ok, detail = check_clock(cfg)
    assert ok and "ntp" in detail and "timedatectl" in detail, detail


@pytest.mark.slow
def test_clock_gps_time_with_offset_from_a_real_gpsd(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gpsfake replays a 2026-11-02 track: GPS time, with the system clock's offset."""
    _no_ntp(monkeypatch)
    with gpsfake_server(TRACK, cycle=0.2) as gps:
        cfg = load_config(write_config(gps={"enabled": True, "host": gps.host, "port": gps.port}))
        t0 = time.monotonic()
        ok, detail = check_clock(cfg)
        assert time.monotonic() - t0 < 15
    assert ok, detail
    assert "records get gps time" in detail and "system clock" in detail, detail
    assert " s from GPS (GPS fix" in detail, detail


def test_ntp_state_names_its_source() -> None:
    synced, how = clock_mod.ntp_state()
    assert synced in (True, False, None) and how
