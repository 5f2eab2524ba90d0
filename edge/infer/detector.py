"""The YuNet TFLite detector: fit the frame into the model's input, run, decode.

The shipped detector takes 256x320 in RGB (its first convolution's channels were reversed
at conversion): a 640x480 kiosk frame costs one PIL 2x `reduce` to 320x240 and one cast,
and only 16 rows are padding (a 320x320 square padded 80). Other aspects are letterboxed;
a BGR detector (older manifests) still works.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from edge.infer.runtime import TFLiteModel
from edge.infer.yunet import Detection, decode, to_detections


class FaceDetector:
    """Faces with 5 landmarks in an RGB frame, in frame pixel coordinates."""

    def __init__(
        self, model: TFLiteModel, score_threshold: float = 0.6, channel_order: str = "BGR"
    ) -> None:
        self.model = model
        self.score_threshold = float(score_threshold)
        self.rgb = channel_order == "RGB"
        self._input = model.input_names[0]
        shape = model.input_shape(self._input)  # (1, H, W, 3) NHWC
        self.input_hw = (int(shape[1]), int(shape[2]))
        self._canvas = np.zeros((1, *self.input_hw, 3), np.float32)
        self._filled = self.input_hw  # the canvas region last written (rest is zero)

    def letterbox(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """Frame scaled to fit the input (aspect kept), top-left, zero-padded; float32 0..255.

        A whole-factor downscale uses PIL's `reduce` (box average, ~3x cheaper than
        resize); the canvas is reused, only the stale margin is re-zeroed.
        """
        h, w = frame.shape[:2]
        ih, iw = self.input_hw
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
        canvas = self._canvas
        ph, pw = self._filled
        if ph > nh or pw > nw:  # the last frame covered more: clear the margin
            canvas[0, nh:ph, :pw] = 0.0
            canvas[0, :nh, nw:pw] = 0.0
        canvas[0, :nh, :nw] = pixels if self.rgb else pixels[:, :, ::-1]  # YuNet: 0..255
        self._filled = (nh, nw)
        return canvas, scale

    def detect(self, frame: np.ndarray) -> list[Detection]:
        tensor, scale = self.letterbox(frame)
        outputs = self.model.run({self._input: tensor})
        boxes, kps, scores = decode(outputs, self.input_hw, self.score_threshold)
        return to_detections(boxes, kps, scores, scale)
