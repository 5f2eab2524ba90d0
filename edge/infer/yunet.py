"""YuNet's raw outputs -> face boxes with 5 landmarks (pure numpy, no model here).

Same decoding as OpenCV's FaceDetectorYN (2023mar heads): one anchor per grid cell
at strides 8/16/32, score = sqrt(cls * obj), box centre/size and landmarks relative to
the cell, then non-maximum suppression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Detection:
    """A face in frame coordinates: box (x, y, w, h), landmarks (5, 2), score in [0, 1]."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def size(self) -> float:
        return float(min(self.box[2], self.box[3]))

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])


def decode(
    outputs: dict[str, np.ndarray], input_hw: tuple[int, int], score_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N,4 x1y1x2y2), landmarks (N,5,2) and scores (N,) above the threshold."""
    w = input_hw[1]
    boxes, kpss, scores = [], [], []
    for stride in STRIDES:
        cols = w // stride  # row-major grid of the (h // stride) x cols cells
        cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0.0, 1.0)
        score = np.sqrt(cls * obj)
        keep = np.nonzero(score >= score_threshold)[0]
        if keep.size == 0:
            continue
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
        kps = outputs[f"kps_{stride}"].reshape(-1, 5, 2)[keep]
        c = (keep % cols).astype(np.float32)
        r = (keep // cols).astype(np.float32)
        cx = (c + bbox[:, 0]) * stride
        cy = (r + bbox[:, 1]) * stride
        bw = np.exp(np.clip(bbox[:, 2], -10, 10)) * stride
        bh = np.exp(np.clip(bbox[:, 3], -10, 10)) * stride
        boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1))
        pts = np.empty_like(kps)
        pts[:, :, 0] = (kps[:, :, 0] + c[:, None]) * stride
        pts[:, :, 1] = (kps[:, :, 1] + r[:, None]) * stride
        kpss.append(pts)
        scores.append(score[keep])
    if not boxes:
        return np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros((0,))
    return np.concatenate(boxes), np.concatenate(kpss), np.concatenate(scores)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(xx2 - xx1, 0) * np.maximum(yy2 - yy1, 0)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


def to_detections(
    boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray, scale: float, iou: float = 0.3
) -> list[Detection]:
    """NMS, then map from model input back to frame coordinates (divide by the resize scale)."""
    out = []
    for i in nms(boxes, scores, iou):
        x1, y1, x2, y2 = (float(v) / scale for v in boxes[i])
        out.append(
            Detection(
                box=(x1, y1, x2 - x1, y2 - y1),
                landmarks=(kps[i] / scale).astype(np.float32),
                score=float(scores[i]),
            )
        )
    return out


def pick_subject(faces: list[Detection], frame_hw: tuple[int, int]) -> Detection | None:
    """The person being verified: among faces at least half the largest's area, the most central."""
    if not faces:
        return None
    largest = max(f.area for f in faces)
    big = [f for f in faces if f.area >= 0.5 * largest]
    cy, cx = frame_hw[0] / 2.0, frame_hw[1] / 2.0

    def dist(f: Detection) -> float:
        fx = f.box[0] + f.box[2] / 2.0
        fy = f.box[1] + f.box[3] / 2.0
        return (fx - cx) ** 2 + (fy - cy) ** 2

    return min(big, key=dist)
