"""The App's shutdown order: its camera probe thread ends before the camera is stopped.

Before, `App.stop()` (what the demo calls) left the probe running, and its next grab hit
the stopped replay camera: "camera probe failed: ... capture() before start()". Real
parts: the replay camera, the real face models, the real API socket and SQLite store.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

import edge.daemon as daemon_mod
from edge.config import load_config
from edge.daemon import App
from edge.keys import init_device_key
from edge.notify import Notifier
from tests.conftest import WriteConfig
from tests.support.helpers import free_port, wait_for


def test_stop_ends_the_camera_probe_before_the_camera(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(daemon_mod, "CAMERA_PROBE_S", 0.02)  # probe often: a wide window
    cfg = load_config(write_config(api={"listen": f"127.0.0.1:{free_port()}"}))
    init_device_key(Path(cfg.device.state_dir) / "device.key")
    app = App(cfg, Notifier())
    app.start()
    try:
        probe = next(t for t in app._threads if t.name == "camera-probe")
        wait_for(probe.is_alive, 10, "the camera probe thread")
        time.sleep(0.2)  # a few probes (every 0.02 s) while running: they must all succeed
        assert "camera probe failed" not in caplog.text
    finally:
        with caplog.at_level(logging.WARNING, logger="edge.daemon"):
            app.stop()
            alive_after_stop = probe.is_alive()
            time.sleep(0.3)  # long enough for a probe left running to try the stopped camera
    assert not alive_after_stop, "the camera probe outlived App.stop()"
    assert "camera probe failed" not in caplog.text
