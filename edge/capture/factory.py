"""Pick the camera backend from the config; a missing camera is DeviceMissing (exit 3)."""

from __future__ import annotations

from typing import Any

from edge.capture.camera import Camera
from edge.config import CameraConfig
from edge.errors import BadInput, DeviceMissing


def open_camera(cfg: CameraConfig, picamera2_class: Any | None = None) -> Camera:
    """A camera ready to start(); raises DeviceMissing when there is none to open.

    picamera2 is imported only here and only for that backend (the `pi` extra).
    """
    if cfg.backend == "replay":
        from edge.capture.replay import ReplayCamera

        replay = ReplayCamera(cfg)
        if not replay.path.exists():
            raise DeviceMissing(f"replay camera: camera.replay_path {replay.path} does not exist")
        return replay
    if cfg.backend == "picamera2":
        from edge.capture.picam import Picamera2Camera

        pcam = Picamera2Camera(cfg, picamera2_class=picamera2_class)
        pcam.probe()
        return pcam
    raise BadInput(f"camera.backend: expected replay or picamera2, got {cfg.backend!r}")
