"""Capture: the camera (picamera2 on a Pi, replay elsewhere) and the GPS reader (gpsd).

Imports neither `edge.infer` nor `edge.uplink`; `edge.parts` wires them together.
"""

from __future__ import annotations

from edge.capture.camera import Camera, CameraTimeout, Frame
from edge.capture.factory import open_camera

__all__ = ["Camera", "CameraTimeout", "Frame", "open_camera"]
