"""Decodes a QR code or barcode (KPM card, invitation letter, officer badge) from a frame.

An adapter over zxing-cpp, which runs on the kiosk itself: nothing leaves the device.
"""

from __future__ import annotations

import numpy as np


def decode_codes(rgb: np.ndarray) -> list[str]:
    """Every code's text found in one RGB frame (empty when none)."""
    import zxingcpp

    gray = np.ascontiguousarray(
        (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    )
    return [r.text for r in zxingcpp.read_barcodes(gray) if r.valid and r.text]


def first_code(frames: list[np.ndarray]) -> str | None:
    """The first code found in any of the frames (a burst gives a moving card several tries)."""
    for frame in frames:
        texts = decode_codes(frame)
        if texts:
            return texts[0].strip()
    return None
