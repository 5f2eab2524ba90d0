"""Liveness-specific quality gates (pure): frames too poor for the PAD models to judge.

The MiniFASNet pair reads fine texture (print grain, moire, skin micro-detail). Burnt-out
highlights, sensor noise and defocus destroy exactly that, and the models then call a live
face a print. A frame that fails one of these gates is not judged at all (no liveness
score): a burst with too few judged frames ends `poor_quality` with the reason, so the
officer fixes the light or the distance instead of being told "spoof". The face gates of
edge/infer/quality.py run first; these run only when liveness is enabled.

Measured on the detector's face box in the frame (clamped into it):
  clipped    fraction of pixels with any channel >= 250 (burnt out by sun or flash)
  noise      Immerkaer's estimate of the noise standard deviation (0..255) on the grey box
  face_px    shorter side of the box
and, from the face gates, the Laplacian variance of the aligned 112x112 crop (sharpness):
the liveness check may ask for a sharper face than matching does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge.infer.quality import gray

CLIP_LEVEL = 250
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


@dataclass(frozen=True)
class PadLimits:
    """Thresholds, normally from LivenessConfig; 1.0 / 255 / 0 switch a gate off."""

    max_clipped: float = 1.0
    max_noise: float = 255.0
    min_face_px: float = 0.0
    min_sharpness: float = 0.0


@dataclass(frozen=True)
class PadQuality:
    """What the gates measured on one face (numbers only, no biometric data)."""

    clipped: float
    noise: float
    face_px: float
    sharpness: float

    def as_dict(self) -> dict[str, Any]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def face_region(frame: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The face box (x, y, w, h) clamped into the frame; at least one pixel."""
    h, w = frame.shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    x1 = min(max(int(x), 0), w - 1)
    y1 = min(max(int(y), 0), h - 1)
    x2 = min(max(round(x + bw), x1 + 1), w)
    y2 = min(max(round(y + bh), y1 + 1), h)
    return frame[y1:y2, x1:x2]


def noise_sigma(g: np.ndarray) -> float:
    """Immerkaer (1996) fast noise estimate: mean |Laplacian-difference| x sqrt(pi/2) / 6.

    The 3x3 mask cancels smooth image structure (planes and ramps), so what is left is
    mostly sensor noise; 0 on images smaller than 3x3."""
    g = np.asarray(g, np.float32)
    h, w = g.shape
    if h < 3 or w < 3:
        return 0.0
    acc = np.zeros((h - 2, w - 2), np.float32)
    for i in range(3):
        for j in range(3):
            acc += _IMMERKAER[i, j] * g[i : h - 2 + i, j : w - 2 + j]
    return float(np.sqrt(np.pi / 2) * np.abs(acc).mean() / 6.0)


def measure_pad(
    frame_rgb: np.ndarray, box: tuple[float, float, float, float], sharpness: float
) -> PadQuality:
    """The gates' measures on one face; sharpness comes from quality.measure."""
    face = face_region(frame_rgb, box)
    burnt = np.count_nonzero(face.max(axis=2) >= CLIP_LEVEL)
    return PadQuality(
        clipped=float(burnt / (face.shape[0] * face.shape[1])),
        noise=noise_sigma(gray(face)),
        face_px=float(min(box[2], box[3])),
        sharpness=float(sharpness),
    )


def pad_gate(q: PadQuality, limits: PadLimits) -> str | None:
    """None if the frame can be judged, else the reason (what the officer should change)."""
    if q.face_px < limits.min_face_px:
        return (
            f"face too small for the liveness check ({q.face_px:.0f}px <"
            f" {limits.min_face_px:.0f}px): move closer"
        )
    if q.clipped > limits.max_clipped:
        return (
            f"too bright for the liveness check ({100 * q.clipped:.0f}% of the face burnt out):"
            " move out of direct sunlight"
        )
    if q.noise > limits.max_noise:
        return (
            f"too dark or grainy for the liveness check (noise {q.noise:.1f} >"
            f" {limits.max_noise:.1f}): turn on a light or move to a brighter spot"
        )
    if q.sharpness < limits.min_sharpness:
        return (
            f"too blurred for the liveness check (sharpness {q.sharpness:.1f} <"
            f" {limits.min_sharpness:.1f}): hold still, clean the lens"
        )
    return None
