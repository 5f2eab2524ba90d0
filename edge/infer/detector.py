"""The YuNet TFLite detector: letterbox the frame into the model's square input, decode."""

from __future__ import annotations

import numpy as np
from PIL import Image

from edge.infer.runtime import TFLiteModel
from edge.infer.yunet import Detection, decode, to_detections


class FaceDetector:
    """Faces with 5 landmarks in an RGB frame, in frame pixel coordinates."""

    def __init__(self, model: TFLiteModel, score_threshold: float = 0.6) -> None:
        self.model = model
        self.score_threshold = float(score_threshold)
        self._input = model.input_names[0]
        shape = model.input_shape(self._input)  # (1, H, W, 3) NHWC
        self.input_hw = (int(shape[1]), int(shape[2]))

    def letterbox(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """Frame scaled to fit the input (aspect kept), top-left, zero-padded; BGR float32."""
        h, w = frame.shape[:2]
        ih, iw = self.input_hw
        scale = min(ih / h, iw / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        img = Image.fromarray(frame)
        resample = Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX
        resized = np.asarray(img.resize((nw, nh), resample), dtype=np.float32)
        canvas = np.zeros((1, ih, iw, 3), np.float32)
        canvas[0, :nh, :nw] = resized[:, :, ::-1]  # YuNet was trained on BGR, 0..255
        return canvas, scale

    def detect(self, frame: np.ndarray) -> list[Detection]:
        tensor, scale = self.letterbox(frame)
        outputs = self.model.run({self._input: tensor})
        boxes, kps, scores = decode(outputs, self.input_hw, self.score_threshold)
        return to_detections(boxes, kps, scores, scale)
