"""Reading photos and checking camera frames: bad input becomes BadInput, never a crash."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edge.errors import BadInput

MIN_SIDE = 32
MAX_PIXELS = 64_000_000


def load_image(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; BadInput (with the path) if corrupt or truncated."""
    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                img.load()  # a truncated file fails here, not later
                # a phone or camera photo stored sideways says so in EXIF: stand it up
                rgb = ImageOps.exif_transpose(img).convert("RGB")
    except FileNotFoundError:
        raise BadInput(f"{p}: image file not found") from None
    except IsADirectoryError:
        raise BadInput(f"{p}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise BadInput(f"{p}: not an image file (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Warning) as exc:
        raise BadInput(f"{p}: corrupt or truncated image: {exc}") from None
    arr = np.asarray(rgb, dtype=np.uint8)
    check_frame(arr, where=str(p))
    return arr


def check_frame(frame: object, where: str = "frame") -> np.ndarray:
    """Accept only HxWx3 uint8 arrays of a usable size; BadInput says what is wrong."""
    if not isinstance(frame, np.ndarray):
        raise BadInput(f"{where}: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise BadInput(f"{where}: expected dtype uint8, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise BadInput(f"{where}: expected shape HxWx3 (RGB), got {frame.shape}")
    h, w = frame.shape[:2]
    if h == 0 or w == 0:
        raise BadInput(f"{where}: empty frame ({w}x{h})")
    if h < MIN_SIDE or w < MIN_SIDE:
        raise BadInput(f"{where}: frame too small ({w}x{h}, need at least {MIN_SIDE}px a side)")
    if h * w > MAX_PIXELS:
        raise BadInput(f"{where}: frame too large ({w}x{h})")
    return frame
