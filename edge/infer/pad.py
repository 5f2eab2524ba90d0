"""Passive presentation-attack detection (PAD): MiniFASNetV2 (2.7x) + MiniFASNetV1SE (4.0x).

Each model sees the face box enlarged by its scale around the box centre (clamped into
the frame, as upstream's CropImage does), resized to 80x80 with plain bilinear sampling
(upstream trains on cv2.resize INTER_LINEAR), fed as BGR 0..255. Each gives 3 logits; the
softmaxes of the two models are averaged and index 1 is the "real" probability. The
crop and fusion are pure functions here, so they are tested without a model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.infer.errors import ModelError
from edge.infer.manifest import Manifest, ModelEntry
from edge.infer.runtime import TFLiteModel

log = logging.getLogger(__name__)


def scaled_box(
    frame_wh: tuple[int, int], box: tuple[float, float, float, float], scale: float
) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) inclusive: the box scaled around its centre, shifted into the frame.

    Same arithmetic as upstream `CropImage._get_new_box`: the scale shrinks when the
    enlarged box would not fit the frame at all, then the box slides back inside.
    """
    src_w, src_h = frame_wh
    x, y, box_w, box_h = (float(v) for v in box)
    box_w = max(box_w, 1.0)
    box_h = max(box_h, 1.0)
    scale = min((src_h - 1) / box_h, (src_w - 1) / box_w, float(scale))
    new_w, new_h = box_w * scale, box_h * scale
    cx, cy = x + box_w / 2, y + box_h / 2
    x1, y1 = cx - new_w / 2, cy - new_h / 2
    x2, y2 = cx + new_w / 2, cy + new_h / 2
    if x1 < 0:
        x2 -= x1
        x1 = 0
    if y1 < 0:
        y2 -= y1
        y1 = 0
    if x2 > src_w - 1:
        x1 -= x2 - src_w + 1
        x2 = src_w - 1
    if y2 > src_h - 1:
        y1 -= y2 - src_h + 1
        y2 = src_h - 1
    return int(max(x1, 0)), int(max(y1, 0)), int(x2), int(y2)


def resize_bilinear(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """cv2.resize(INTER_LINEAR) in numpy: half-pixel centres, no anti-aliasing, float32."""
    h, w = img.shape[:2]
    ys = (np.arange(out_h, dtype=np.float32) + 0.5) * (h / out_h) - 0.5
    xs = (np.arange(out_w, dtype=np.float32) + 0.5) * (w / out_w) - 0.5
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[:, None, None]
    wx = (xs - x0)[None, :, None]
    src = img.astype(np.float32, copy=False)
    top = src[y0][:, x0] * (1 - wx) + src[y0][:, x1] * wx
    bottom = src[y1][:, x0] * (1 - wx) + src[y1][:, x1] * wx
    return np.asarray(top * (1 - wy) + bottom * wy, np.float32)


def pad_input(
    frame_rgb: np.ndarray, box: tuple[float, float, float, float], scale: float, size: int = 80
) -> np.ndarray:
    """The model's input: scaled crop of an RGB frame, 1 x size x size x 3, BGR 0..255."""
    h, w = frame_rgb.shape[:2]
    x1, y1, x2, y2 = scaled_box((w, h), box, scale)
    patch = frame_rgb[y1 : y2 + 1, x1 : x2 + 1]
    if patch.size == 0:  # a degenerate box: take the nearest pixel rather than fail
        patch = frame_rgb[min(y1, h - 1) : min(y1, h - 1) + 1, min(x1, w - 1) : min(x1, w - 1) + 1]
    out = resize_bilinear(patch, size, size)
    # upstream feeds the uint8 pixels cv2.resize returns: round like it
    return np.ascontiguousarray(np.round(out[None, :, :, ::-1]), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64).reshape(-1)
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def fuse_real(probabilities: Sequence[np.ndarray], real_index: int = 1) -> float:
    """Upstream's fusion: mean of the models' softmax outputs, then the "real" class."""
    stacked = np.stack([np.asarray(p, np.float64).reshape(-1) for p in probabilities])
    return float(stacked.mean(axis=0)[real_index])


@dataclass(frozen=True)
class PadModelSpec:
    """One PAD model from the manifest: file, sha256, crop scale, input size."""

    entry: ModelEntry
    scale: float
    input_size: int
    real_index: int


def pad_specs(manifest: Manifest) -> tuple[PadModelSpec, ...]:
    """The PAD models the manifest lists (empty when it lists none)."""
    return tuple(
        PadModelSpec(
            e, float(e.extra["scale"]), int(e.extra["input_size"][0]), int(e.extra["real_index"])
        )
        for e in manifest.pad
    )


class LivenessModel:
    """The fused MiniFASNet pair: frame + face box -> probability that a live face is there."""

    def __init__(self, models: Sequence[tuple[PadModelSpec, TFLiteModel]]) -> None:
        if not models:
            raise ValueError("liveness: no PAD models")
        self.models = list(models)
        self._inputs = [m.input_names[0] for _, m in self.models]
        self.sha256s = tuple(spec.entry.sha256 for spec, _ in self.models)

    @classmethod
    def load(cls, manifest: Manifest, runtime: str = "auto", threads: int = 1) -> LivenessModel:
        specs = pad_specs(manifest)
        if not specs:
            raise ModelError(f"{manifest.directory}: the manifest lists no PAD models")
        loaded = [(s, TFLiteModel(s.entry.path, s.entry.sha256, runtime, threads)) for s in specs]
        log.info("liveness models loaded: %s", ", ".join(s.entry.role for s in specs))
        return cls(loaded)

    @property
    def runtime(self) -> str:
        return self.models[0][1].runtime

    def probabilities(
        self, frame_rgb: np.ndarray, box: tuple[float, float, float, float]
    ) -> list[np.ndarray]:
        """Each model's softmax over (spoof-a, real, spoof-b) for this face."""
        out = []
        for (spec, model), name in zip(self.models, self._inputs, strict=True):
            x = pad_input(frame_rgb, box, spec.scale, spec.input_size)
            logits = next(iter(model.run({name: x}).values()))
            out.append(softmax(logits))
        return out

    def score(self, frame_rgb: np.ndarray, box: tuple[float, float, float, float]) -> float:
        """The fused "real" probability in [0, 1]."""
        probs = self.probabilities(frame_rgb, box)
        return fuse_real(probs, self.models[0][0].real_index)
