"""The Pi camera through picamera2 (only imported where picamera2 exists: the `pi` extra).

picamera2 needs libcamera's Python bindings, which only Raspberry Pi OS ships, so this
module never imports it at load time: `load_picamera2()` does, when the backend is
picked. Everything device-specific goes through the injected `Picamera2` class so the
adapter's own logic (configuration, channel order, autofocus, errors) is tested on any
machine against a stand-in; real capture is verified on a Pi.

Channel order: picamera2 names formats after the DRM fourcc, so an `RGB888` array is
B, G, R in memory and a `BGR888` array is R, G, B; the X formats add a fourth byte.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from edge.capture.camera import Camera, CameraTimeout
from edge.config import CameraConfig
from edge.errors import DeviceMissing

log = logging.getLogger(__name__)

STREAM_FORMAT = "RGB888"  # 3 bytes a pixel, no alpha to drop; B, G, R in memory
AF_MODE_CONTINUOUS = 2  # libcamera controls.AfModeEnum.Continuous
BUFFER_COUNT = 4  # enough for a 5-frame burst at preview rate without drops

# memory order of each 8-bit format, per picamera2's manual (section "Image formats")
_RGB_INDEX = {
    "RGB888": (2, 1, 0),
    "BGR888": (0, 1, 2),
    "XRGB8888": (2, 1, 0),
    "XBGR8888": (0, 1, 2),
}

NO_CAMERA = (
    "picamera2: no camera attached (libcamera found none); check the ribbon cable "
    "and that `rpicam-hello --list-cameras` lists it"
)


def load_picamera2() -> Any:
    """The Picamera2 class, or DeviceMissing saying how to get it."""
    try:
        from picamera2 import Picamera2  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise DeviceMissing(
            "camera.backend is picamera2 but the picamera2 module cannot be imported "
            f"({exc}); on Raspberry Pi OS: apt install python3-picamera2 and create the "
            "venv with --system-site-packages, elsewhere use camera.backend = replay"
        ) from None
    return Picamera2


def to_rgb(arr: np.ndarray, fmt: str) -> np.ndarray:
    """A picamera2 array in `fmt` as contiguous R, G, B uint8 (pure)."""
    order = _RGB_INDEX.get(fmt)
    if order is None:
        raise ValueError(f"unsupported picamera2 format {fmt!r}; use {STREAM_FORMAT}")
    if arr.ndim != 3 or arr.shape[2] < 3 or arr.dtype != np.uint8:
        raise ValueError(f"picamera2 gave a {arr.shape} {arr.dtype} array for {fmt}")
    return np.ascontiguousarray(arr[:, :, list(order)])


class Picamera2Camera(Camera):
    """A preview-rate configuration at camera.width x height (a burst is fast; faces are
    well resolved at 1280x960), continuous autofocus where the module has it (Camera
    Module 3), and camera.settle_s for auto exposure before the first frame."""

    backend = "picamera2"

    def __init__(
        self,
        cfg: CameraConfig,
        picamera2_class: Any | None = None,
        camera_num: int = 0,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self._cls = picamera2_class if picamera2_class is not None else load_picamera2()
        self.camera_num = camera_num
        self._sleep = sleep or threading.Event().wait
        self._cam: Any = None
        self.format = STREAM_FORMAT
        self.size = (cfg.width, cfg.height)
        self.autofocus = False
        self.model = ""

    def probe(self) -> None:
        """Fail early and clearly when libcamera sees no camera."""
        info = getattr(self._cls, "global_camera_info", None)
        if info is not None:
            try:
                cameras = info()
            except RuntimeError as exc:
                raise DeviceMissing(f"picamera2: libcamera failed ({exc})") from None
            if len(cameras) <= self.camera_num:
                raise DeviceMissing(NO_CAMERA)

    def start(self) -> None:
        if self._cam is not None:
            return
        try:
            cam = self._cls(self.camera_num)
        except IndexError:
            raise DeviceMissing(NO_CAMERA) from None
        except RuntimeError as exc:
            raise DeviceMissing(
                f"picamera2: camera {self.camera_num} could not be opened ({exc}); "
                "is another process (rpicam-*, a second daemon) using it?"
            ) from None
        try:
            config = cam.create_preview_configuration(
                main={"size": (self.cfg.width, self.cfg.height), "format": STREAM_FORMAT},
                buffer_count=BUFFER_COUNT,
            )
            cam.configure(config)
            main = (getattr(cam, "camera_config", None) or config)["main"]
            self.format = str(main.get("format", STREAM_FORMAT))
            self.size = tuple(main.get("size", self.size))  # type: ignore[assignment]
            self.autofocus = self.cfg.autofocus and "AfMode" in (cam.camera_controls or {})
            if self.autofocus:
                cam.set_controls({"AfMode": AF_MODE_CONTINUOUS})
            self.model = str((cam.camera_properties or {}).get("Model", ""))
            cam.start()
        except (RuntimeError, ValueError, KeyError, IndexError) as exc:
            with contextlib.suppress(Exception):
                cam.close()
            raise DeviceMissing(f"picamera2: could not configure the camera ({exc})") from None
        self._cam = cam
        log.info("picamera2 %s started at %sx%s %s", self.model, *self.size, self.format)
        if self.cfg.settle_s > 0:
            self._sleep(self.cfg.settle_s)  # auto exposure and white balance converge

    def _grab(self) -> np.ndarray:
        cam = self._cam
        if cam is None:
            raise DeviceMissing("picamera2: capture() before start()")
        try:
            job = cam.capture_array("main", wait=False)
            arr = cam.wait(job, timeout=self.cfg.frame_timeout_s)
        except TimeoutError:
            raise CameraTimeout(
                f"picamera2: no frame within {self.cfg.frame_timeout_s:g} s (camera stalled)"
            ) from None
        except RuntimeError as exc:
            raise DeviceMissing(f"picamera2: capture failed ({exc})") from None
        return to_rgb(np.asarray(arr), self.format)

    def stop(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        for step in (cam.stop, cam.close):
            try:
                step()
            except Exception as exc:
                log.warning("picamera2: %s failed: %s", step.__name__, exc)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "size": list(self.size),
            "format": self.format,
            "autofocus": self.autofocus,
            "settle_s": self.cfg.settle_s,
            "started": self._cam is not None,
            "frames_captured": self.frames_captured,
        }
