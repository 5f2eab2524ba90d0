"""The face embedder: 112x112 aligned crop -> L2-normalised float32 (128-d SFace, 512-d EdgeFace).

How pixels are fed (channel order, (px - mean) / std) and the output size come from the
model's manifest entry, so one class serves every embedder the manifest lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edge.errors import BadInput
from edge.infer.errors import ModelError
from edge.infer.runtime import TFLiteModel


def l2_normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n < 1e-12:
        raise BadInput("embedding is zero or not finite")
    return (v / n).astype(np.float32)


class FaceEmbedder:
    """Wraps an embedder model. Defaults are SFace's: RGB 0..255 in (the model itself
    subtracts 127.5 and scales); EdgeFace wants (px - 127.5) / 127.5, done here."""

    def __init__(
        self,
        model: TFLiteModel,
        *,
        mean: float = 0.0,
        std: float = 1.0,
        channel_order: str = "RGB",
        dim: int | None = None,
    ) -> None:
        self.model = model
        self._input = model.input_names[0]
        self._output = model.output_names[0]
        self.mean = float(mean)
        self.std = float(std)
        self.bgr = channel_order == "BGR"
        self.dim = dim

    @classmethod
    def from_entry(cls, model: TFLiteModel, extra: Mapping[str, Any]) -> FaceEmbedder:
        """Settings from the manifest entry's extra keys (edge.infer.manifest)."""
        dim = extra.get("dim")
        return cls(
            model,
            mean=float(extra.get("input_mean", 0.0)),
            std=float(extra.get("input_std", 1.0)),
            channel_order=str(extra.get("channel_order", "RGB")),
            dim=int(dim) if dim is not None else None,
        )

    def embed(self, crop: np.ndarray) -> np.ndarray:
        if crop.shape != (112, 112, 3) or crop.dtype != np.uint8:
            raise BadInput(f"aligned crop: expected 112x112x3 uint8, got {crop.shape} {crop.dtype}")
        x = crop[None, :, :, ::-1] if self.bgr else crop[None]
        x = x.astype(np.float32)
        if self.mean != 0.0 or self.std != 1.0:
            x = (x - np.float32(self.mean)) * np.float32(1.0 / self.std)
        v = l2_normalise(self.model.run({self._input: x})[self._output])
        if self.dim is not None and v.size != self.dim:
            raise ModelError(
                f"{self.model.path}: embedding has {v.size} values, manifest says {self.dim}"
            )
        return v
