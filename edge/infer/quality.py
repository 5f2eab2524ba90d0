"""Quality gates before embedding: face size, blur, pose, exposure (pure functions).

A frame that fails a gate yields `poor_quality` with the reason instead of a decision:
a blurred or turned face gives low scores that look like an impostor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class QualityLimits:
    """The thresholds, normally from FaceConfig."""

    min_face_px: float = 60.0
    min_sharpness: float = 20.0
    max_pose: float = 0.45
    min_brightness: float = 40.0
    max_brightness: float = 220.0


@dataclass(frozen=True)
class Quality:
    """Measured on one face: size (px, shorter box side), Laplacian variance of the aligned
    crop, pose (max of |yaw| ratio and |roll| in radians), mean brightness of the crop centre."""

    face_px: float
    sharpness: float
    pose: float
    yaw: float
    roll: float
    brightness: float

    def as_dict(self) -> dict[str, Any]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}

    @property
    def rank(self) -> float:
        """Higher is better; orders the good frames of a burst."""
        return float(np.log1p(self.sharpness) - 2.0 * self.pose + 0.01 * min(self.face_px, 200))


def gray(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def laplacian_variance(g: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low means blurred."""
    lap = -4.0 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def pose_from_landmarks(lm: np.ndarray) -> tuple[float, float]:
    """(yaw, roll): yaw = nose offset from the eye midline over eye distance (0 frontal,
    about +-0.5 at 45 degrees), roll = eye-line angle in radians."""
    lm = np.asarray(lm, np.float64).reshape(5, 2)
    eye_a, eye_b, nose = lm[0], lm[1], lm[2]
    d = eye_b - eye_a
    dist = float(np.hypot(d[0], d[1]))
    if dist < 1e-6:
        return 1.0, 0.0
    roll = float(np.arctan2(d[1], d[0]))
    mid = (eye_a + eye_b) / 2.0
    u = d / dist  # along the eye line
    yaw = float(np.dot(nose - mid, u) / dist)
    return yaw, roll


def measure(crop: np.ndarray, landmarks: np.ndarray, face_px: float) -> Quality:
    """All quality metrics of one aligned 112x112 crop and its frame landmarks."""
    g = gray(crop)
    yaw, roll = pose_from_landmarks(landmarks)
    centre = g[28:100, 24:88]
    return Quality(
        face_px=float(face_px),
        sharpness=laplacian_variance(g),
        pose=max(abs(yaw), abs(roll)),
        yaw=yaw,
        roll=roll,
        brightness=float(centre.mean()),
    )


def gate(q: Quality, limits: QualityLimits) -> str | None:
    """None if every gate passes, else the first reason (plain text, no biometrics)."""
    if q.face_px < limits.min_face_px:
        return f"face too small ({q.face_px:.0f}px < {limits.min_face_px:.0f}px): move closer"
    if q.pose > limits.max_pose:
        return (
            f"face turned or tilted (pose {q.pose:.2f} > {limits.max_pose:.2f}): look at the camera"
        )
    if q.brightness < limits.min_brightness:
        return f"too dark (brightness {q.brightness:.0f} < {limits.min_brightness:.0f})"
    if q.brightness > limits.max_brightness:
        return f"too bright (brightness {q.brightness:.0f} > {limits.max_brightness:.0f})"
    if q.sharpness < limits.min_sharpness:
        return f"blurred (sharpness {q.sharpness:.1f} < {limits.min_sharpness:.1f}): hold still"
    return None
