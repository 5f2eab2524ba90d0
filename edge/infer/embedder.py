"""The SFace TFLite embedder: 112x112 aligned RGB crop -> L2-normalised 128-d float32."""

from __future__ import annotations

import numpy as np

from edge.errors import BadInput
from edge.infer.runtime import TFLiteModel


def l2_normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n < 1e-12:
        raise BadInput("embedding is zero or not finite")
    return (v / n).astype(np.float32)


class FaceEmbedder:
    """Wraps the embedder model; the model itself subtracts 127.5 and scales (RGB input)."""

    def __init__(self, model: TFLiteModel) -> None:
        self.model = model
        self._input = model.input_names[0]
        self._output = model.output_names[0]

    def embed(self, crop: np.ndarray) -> np.ndarray:
        if crop.shape != (112, 112, 3) or crop.dtype != np.uint8:
            raise BadInput(f"aligned crop: expected 112x112x3 uint8, got {crop.shape} {crop.dtype}")
        out = self.model.run({self._input: crop[None].astype(np.float32)})
        return l2_normalise(out[self._output])
