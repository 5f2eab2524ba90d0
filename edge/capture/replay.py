"""The replay camera: frames from files, for everywhere that is not a Pi.

Sources (camera.replay_path; "" means the bundled sample faces):
- a folder of images (sorted by name; .jpg .jpeg .png .bmp .webp .gif .tif .tiff),
- one image, or an animated GIF/WebP/multi-page TIFF (each page a frame),
- a .npy array (H x W x 3 or N x H x W x 3, uint8 RGB) or .npz with a "frames" array,
- a FIFO carrying a stream of .npy arrays (a live feed for tests and tools: when
  the writer stops, capture() times out exactly like a stalled camera).
Video files (.mp4, .h264, ...) need a decoder (OpenCV or PyAV) that the project does
not ship; convert them once with `ffmpeg -i in.mp4 frames/%04d.png`.

Frames larger than camera.width x camera.height are scaled down (aspect kept), as a
Pi camera configured at that size would deliver them. `stall()` makes capture() time
out (camera.frame_timeout_s) to test stall detection in-process.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import logging
import os
import select
import stat
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from edge.capture.camera import Camera, CameraTimeout
from edge.config import CameraConfig
from edge.errors import BadInput, DeviceMissing

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
ARRAY_SUFFIXES = {".npy", ".npz"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".h264", ".mjpeg", ".webm"}
DEFAULT_SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "faces"
MAX_PIXELS = 4608 * 3456  # the largest Pi camera sensor (Camera Module 3)
CACHE_FRAMES = 64


class ReplayEnded(DeviceMissing):
    """All frames were served and camera.replay_loop is false."""


def fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale down to fit width x height, aspect kept; smaller frames are left alone."""
    h, w = rgb.shape[:2]
    if w <= width and h <= height:
        return rgb
    img = Image.fromarray(rgb)
    img.thumbnail((width, height), Image.Resampling.LANCZOS)
    return np.asarray(img)


def _check_array(arr: Any, where: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
        raise BadInput(f"{where}: expected uint8 RGB frames, got {getattr(arr, 'dtype', arr)!r}")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[3] != 3 or arr.shape[0] < 1:
        raise BadInput(f"{where}: expected shape H x W x 3 or N x H x W x 3, got {arr.shape}")
    if arr.shape[1] * arr.shape[2] > MAX_PIXELS or min(arr.shape[1:3]) < 1:
        raise BadInput(f"{where}: frame size {arr.shape[2]}x{arr.shape[1]} is not a camera's")
    return arr


def _image_frames(path: Path) -> list[np.ndarray]:
    try:
        with Image.open(path) as img:
            frames = []
            for page in ImageSequence.Iterator(img):
                frames.append(np.asarray(ImageOps.exif_transpose(page).convert("RGB")))
            return frames
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"{path}: not a readable image ({exc})") from None
    except Image.DecompressionBombError:
        raise BadInput(f"{path}: image too large") from None


class _NpyStream:
    """Reads a stream of .npy arrays from a FIFO, with a deadline and partial-read state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.buf = bytearray()

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CameraTimeout(f"replay camera {self.path}: no frame within the timeout")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, max(65536, n - len(self.buf)))
            except BlockingIOError:
                continue
            if not chunk:  # no writer right now; one may come back
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                continue
            self.buf += chunk

    def read(self, deadline: float) -> np.ndarray:
        self._fill(10, deadline)
        if bytes(self.buf[:6]) != b"\x93NUMPY":
            self.buf.clear()
            raise BadInput(f"{self.path}: stream is not a sequence of .npy arrays")
        major = self.buf[6]
        hlen_size = 2 if major == 1 else 4
        self._fill(8 + hlen_size, deadline)
        hlen = int.from_bytes(self.buf[8 : 8 + hlen_size], "little")
        start = 8 + hlen_size
        self._fill(start + hlen, deadline)
        try:
            header = ast.literal_eval(bytes(self.buf[start : start + hlen]).decode("latin1"))
            shape = tuple(int(x) for x in header["shape"])
            ok = header["descr"] == "|u1" and not header["fortran_order"] and len(shape) == 3
        except (ValueError, SyntaxError, KeyError, TypeError):
            ok, shape = False, ()
        if not ok or shape[2] != 3 or shape[0] * shape[1] > MAX_PIXELS:
            self.buf.clear()
            raise BadInput(f"{self.path}: expected uint8 H x W x 3 .npy frames")
        nbytes = shape[0] * shape[1] * 3
        self._fill(start + hlen + nbytes, deadline)
        data = bytes(self.buf[start + hlen : start + hlen + nbytes])
        del self.buf[: start + hlen + nbytes]
        return np.frombuffer(data, dtype=np.uint8).reshape(shape)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class ReplayCamera(Camera):
    """Serves frames from files in order, looping if camera.replay_loop."""

    backend = "replay"

    def __init__(self, cfg: CameraConfig, path: str | Path | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        chosen = path if path is not None else (cfg.replay_path or DEFAULT_SAMPLES)
        self.path = Path(chosen).expanduser()
        self._files: list[Path] = []  # one entry per frame source file
        self._array: np.ndarray | None = None
        self._stream: _NpyStream | None = None
        self._cache: dict[int, list[np.ndarray]] = {}
        self._pos = 0  # next frame (file index, page index) flattened lazily
        self._page = 0
        self._started = False
        self._running = threading.Event()
        self._running.set()  # set = delivering; cleared = stalled
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        p = self.path
        try:
            st = p.stat()
        except FileNotFoundError:
            raise DeviceMissing(f"replay camera: {p}: no such file or directory") from None
        except OSError as exc:
            raise DeviceMissing(f"replay camera: {p}: {exc.strerror}") from None
        suffix = p.suffix.lower()
        if stat.S_ISFIFO(st.st_mode):
            try:
                self._stream = _NpyStream(p)
            except OSError as exc:
                raise DeviceMissing(
                    f"replay camera: {p}: {os.strerror(exc.errno or errno.EIO)}"
                ) from None
        elif p.is_dir():
            self._files = sorted(
                f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES | ARRAY_SUFFIXES
            )
            if not self._files:
                raise DeviceMissing(f"replay camera: {p}: no images or .npy/.npz files in it")
        elif suffix in VIDEO_SUFFIXES:
            raise BadInput(
                f"camera.replay_path: {p}: video files need a decoder (OpenCV/PyAV) that is "
                "not installed; convert to images (ffmpeg -i IN frames/%04d.png) or .npy"
            )
        elif suffix in IMAGE_SUFFIXES | ARRAY_SUFFIXES:
            self._files = [p]
        else:
            raise BadInput(
                f"camera.replay_path: {p}: expected a folder, an image, .npy/.npz or a FIFO"
            )
        self._pos = self._page = 0
        self._started = True
        log.info("replay camera on %s", p)

    def stop(self) -> None:
        self._started = False
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._cache.clear()
        self._array = None

    # -- stall simulation --------------------------------------------------------
    def stall(self, stalled: bool = True) -> None:
        """Stop (or resume) delivering frames; a stalled capture() times out."""
        if stalled:
            self._running.clear()
        else:
            self._running.set()

    # -- frames ----------------------------------------------------------------
    def _load(self, i: int) -> list[np.ndarray]:
        cached = self._cache.get(i)
        if cached is not None:
            return cached
        f = self._files[i]
        if f.suffix.lower() == ".npy":
            try:
                arr = np.load(f, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise BadInput(f"{f}: not a readable .npy ({exc})") from None
            frames = list(_check_array(arr, str(f)))
        elif f.suffix.lower() == ".npz":
            try:
                with np.load(f, allow_pickle=False) as z:
                    key = (
                        "frames"
                        if "frames" in z.files
                        else (z.files[0] if len(z.files) == 1 else None)
                    )
                    if key is None:
                        raise BadInput(f"{f}: expected a 'frames' array in the .npz")
                    arr = z[key]
            except (OSError, ValueError) as exc:
                raise BadInput(f"{f}: not a readable .npz ({exc})") from None
            frames = list(_check_array(arr, str(f)))
        else:
            frames = _image_frames(f)
        frames = [fit(np.asarray(a), self.cfg.width, self.cfg.height) for a in frames]
        if len(self._cache) >= CACHE_FRAMES:
            self._cache.pop(next(iter(self._cache)))
        self._cache[i] = frames
        return frames

    def _grab(self) -> np.ndarray:
        if not self._started:
            raise DeviceMissing("replay camera: capture() before start()")
        deadline = time.monotonic() + self.cfg.frame_timeout_s
        if not self._running.wait(self.cfg.frame_timeout_s):
            raise CameraTimeout(
                f"replay camera {self.path}: no frame within {self.cfg.frame_timeout_s:g} s (stalled)"
            )
        with self._lock:
            if self._stream is not None:
                return fit(self._stream.read(deadline), self.cfg.width, self.cfg.height)
            if self._pos >= len(self._files):
                if not self.cfg.replay_loop:
                    raise ReplayEnded(
                        f"replay camera {self.path}: all frames served (replay_loop is false)"
                    )
                self._pos = self._page = 0
            frames = self._load(self._pos)
            frame = frames[self._page]
            self._page += 1
            if self._page >= len(frames):
                self._pos, self._page = self._pos + 1, 0
            return frame.copy()  # a fresh array per frame, as a real camera gives

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "path": str(self.path),
            "source": "fifo"
            if self._stream is not None
            else ("folder" if self.path.is_dir() else "file"),
            "files": len(self._files),
            "loop": self.cfg.replay_loop,
            "max_size": [self.cfg.width, self.cfg.height],
            "stalled": not self._running.is_set(),
            "frames_captured": self.frames_captured,
        }
