"""The YuNet TFLite detector: fit the frame into the model's input, run, decode.

The detector runs at the frame's aspect: the shipped main file takes 256x320 (the kiosk's
4:3 frames: a 640x480 frame is one PIL 2x `reduce` to 320x240 plus 16 zero rows), and a
square 320x320 file, loaded only when a square-ish photo first comes (enrolment photos,
the dev set), serves those without shrinking them. Both take RGB (their first
convolution's channels were reversed at conversion), so no per-frame channel flip; a
BGR detector (older manifests) still works. Anything else is letterboxed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from edge.infer.runtime import TFLiteModel
from edge.infer.yunet import Detection, decode, to_detections


@dataclass
class _Input:
    """One detector file and the canvas it is fed from (reused: only stale margins zeroed)."""

    model: TFLiteModel
    name: str
    hw: tuple[int, int]
    canvas: np.ndarray
    filled: tuple[int, int]

    @classmethod
    def of(cls, model: TFLiteModel) -> _Input:
        name = model.input_names[0]
        shape = model.input_shape(name)  # (1, H, W, 3) NHWC
        hw = (int(shape[1]), int(shape[2]))
        return cls(model, name, hw, np.zeros((1, *hw, 3), np.float32), hw)


class FaceDetector:
    """Faces with 5 landmarks in an RGB frame, in frame pixel coordinates."""

    def __init__(
        self,
        model: TFLiteModel,
        score_threshold: float = 0.6,
        channel_order: str = "BGR",
        other_shapes: Mapping[tuple[int, int], Callable[[], TFLiteModel]] | None = None,
    ) -> None:
        self.score_threshold = float(score_threshold)
        self.rgb = channel_order == "RGB"
        self._main = _Input.of(model)
        self._inputs: dict[tuple[int, int], _Input] = {self._main.hw: self._main}
        self._loaders = dict(other_shapes or {})  # (H, W) -> load that file on first use

    @property
    def model(self) -> TFLiteModel:
        return self._main.model

    @property
    def input_hw(self) -> tuple[int, int]:
        return self._main.hw

    def _input_for(self, frame_hw: tuple[int, int]) -> _Input:
        """The input whose aspect is nearest the frame's (loading it the first time)."""
        shapes = [*self._inputs, *(s for s in self._loaders if s not in self._inputs)]
        aspect = math.log(frame_hw[1] / frame_hw[0])
        best = min(
            shapes, key=lambda hw: (abs(math.log(hw[1] / hw[0]) - aspect), hw != self._main.hw)
        )
        if best not in self._inputs:
            self._inputs[best] = _Input.of(self._loaders[best]())
        return self._inputs[best]

    def letterbox(self, frame: np.ndarray, inp: _Input | None = None) -> tuple[np.ndarray, float]:
        """Frame scaled to fit the input (aspect kept), top-left, zero-padded; float32 0..255.

        A whole-factor downscale uses PIL's `reduce` (box average, ~3x cheaper than
        resize); the canvas is reused, only the stale margin is re-zeroed.
        """
        inp = inp or self._main
        h, w = frame.shape[:2]
        ih, iw = inp.hw
        scale = min(ih / h, iw / w)
        img = Image.fromarray(frame)
        factor = round(1 / scale)
        if scale < 1 and abs(factor * scale - 1) < 1e-9 and h % factor == 0 and w % factor == 0:
            img = img.reduce(factor)  # a whole-factor downscale: box average, exact
        else:
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            resample = Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX
            img = img.resize((nw, nh), resample)
        nw, nh = img.size
        pixels = np.asarray(img)
        canvas = inp.canvas
        ph, pw = inp.filled
        if ph > nh or pw > nw:  # the last frame covered more: clear the margin
            canvas[0, nh:ph, :pw] = 0.0
            canvas[0, :nh, nw:pw] = 0.0
        canvas[0, :nh, :nw] = pixels if self.rgb else pixels[:, :, ::-1]  # YuNet: 0..255
        inp.filled = (nh, nw)
        return canvas, scale

    def detect(self, frame: np.ndarray) -> list[Detection]:
        inp = self._input_for((frame.shape[0], frame.shape[1]))
        tensor, scale = self.letterbox(frame, inp)
        outputs = inp.model.run({inp.name: tensor})
        boxes, kps, scores = decode(outputs, inp.hw, self.score_threshold)
        return to_detections(boxes, kps, scores, scale)
