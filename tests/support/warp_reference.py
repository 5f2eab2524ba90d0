"""The numpy bilinear warp the face pipeline was calibrated with (docs/accuracy.md's 0.0067),
kept verbatim as the reference `edge.infer.align` must reproduce pixel for pixel."""

from __future__ import annotations

import numpy as np

from edge.infer.align import CROP

_GRID = np.mgrid[0:CROP, 0:CROP].astype(np.float32)  # (ys, xs) of the output crop


def reference_warp(image: np.ndarray, m: np.ndarray, size: int = CROP) -> np.ndarray:
    """Bilinear warp of `image` by forward matrix m into a size x size crop (edge-replicated)."""
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]])).astype(np.float32)
    ys, xs = _GRID if size == CROP else np.mgrid[0:size, 0:size].astype(np.float32)
    h, w = image.shape[:2]
    sx = np.clip(inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], 0, w - 1)
    sy = np.clip(inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2], 0, h - 1)
    x0 = sx.astype(np.intp)  # floor: sx >= 0
    y0 = sy.astype(np.intp)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    flat = image.reshape(-1, image.shape[2])
    a = flat[y0 * w + x0].astype(np.float32)
    b = flat[y0 * w + x1].astype(np.float32)
    c = flat[y1 * w + x0].astype(np.float32)
    d = flat[y1 * w + x1].astype(np.float32)
    top = a + (b - a) * fx
    out = top + ((c + (d - c) * fx) - top) * fy
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
