"""The camera interface every backend implements, and the frame it yields.

Frames are RGB, H x W x 3, uint8, C-contiguous: the layout the face pipeline wants,
whatever the backend's native order. Each frame carries a monotonic timestamp (for
ordering and stall detection) and the wall-clock time (for the record).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.errors import DeviceMissing


class CameraTimeout(DeviceMissing):
    """No frame arrived within camera.frame_timeout_s: the camera has stalled."""


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray = field(repr=False)  # H x W x 3 uint8, R, G, B
    monotonic: float
    wall: float
    index: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


def as_rgb_frame(arr: np.ndarray, index: int) -> Frame:
    """Check an RGB array's layout and stamp it as a Frame."""
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 array, got {arr.shape} {arr.dtype}")
    return Frame(np.ascontiguousarray(arr), time.monotonic(), time.time(), index)


class Camera(abc.ABC):
    """start() once, capture() or burst() many times, stop() at the end."""

    backend = "abstract"

    def __init__(self) -> None:
        self.last_frame_monotonic: float | None = None  # stall detection: when did a frame come
        self.frames_captured = 0

    @abc.abstractmethod
    def start(self) -> None:
        """Open the device; raises DeviceMissing with a clear message when there is none."""

    @abc.abstractmethod
    def _grab(self) -> np.ndarray:
        """One RGB array from the device (raises CameraTimeout / DeviceMissing)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Release the device; safe to call twice."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Backend, size and settings for `edge status` / `edge doctor` (no image data)."""

    def capture(self) -> Frame:
        frame = as_rgb_frame(self._grab(), self.frames_captured)
        self.frames_captured += 1
        self.last_frame_monotonic = frame.monotonic
        return frame

    def burst(self, n: int) -> list[Frame]:
        """n frames in a row (the face pipeline picks the best)."""
        if n < 1:
            raise ValueError("burst needs at least one frame")
        return [self.capture() for _ in range(n)]

    def seconds_since_frame(self, now_monotonic: float | None = None) -> float | None:
        if self.last_frame_monotonic is None:
            return None
        now = time.monotonic() if now_monotonic is None else now_monotonic
        return now - self.last_frame_monotonic

    def __enter__(self) -> Camera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
