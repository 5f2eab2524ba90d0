"""Embed photos with every TFLite runtime given; print JSON (run on the host and in the root).

Standalone on purpose: it is copied into the arm64 root and imports only the installed
`edge` package and numpy. Per photo and runtime it reports the detector's raw outputs,
the chosen face (box, landmarks, score) and the embedder's L2-normalised embedding.
Usage: python probe.py RUNTIME[,RUNTIME] LABEL=PHOTO...
"""

from __future__ import annotations

import base64
import json
import platform
import sys
from typing import Any

import numpy as np
from PIL import Image

from edge.config import FaceConfig
from edge.infer.align import align_face
from edge.infer.images import load_image
from edge.infer.pipeline import FacePipeline
from edge.infer.yunet import decode, pick_subject, to_detections


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode("ascii")


def _fixed_crop(frame: np.ndarray) -> np.ndarray:
    """The frame's centre square at 112x112, identical bytes on every machine."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(np.ascontiguousarray(frame[top : top + side, left : left + side]))
    return np.asarray(square.resize((112, 112), Image.Resampling.BILINEAR))


def probe(pipe: FacePipeline, path: str) -> dict[str, Any]:
    det = pipe.detector
    frame = load_image(path)
    tensor, scale = det.letterbox(frame)
    raw = det.model.run({det.model.input_names[0]: tensor})
    flat = np.concatenate([raw[k].reshape(-1) for k in sorted(raw)])
    boxes, kps, scores = decode(raw, det.input_hw, det.score_threshold)
    faces = to_detections(boxes, kps, scores, scale)
    subject = pick_subject(faces, (frame.shape[0], frame.shape[1]))
    out: dict[str, Any] = {"detector_raw": _b64(flat), "faces": len(faces)}
    if subject is None:
        return {**out, "box": None, "landmarks": None, "score": None, "embedding": None}
    crop = align_face(frame, subject.landmarks)
    emb = pipe.embedder.embed(crop)
    return {
        **out,
        # the embedder alone, on the same input on both machines (PIL's 8-bit resize is
        # integer arithmetic): the chain's embedding also carries the detector's jitter
        "embedding_fixed": _b64(pipe.embedder.embed(_fixed_crop(frame))),
        "box": [float(v) for v in subject.box],
        "landmarks": np.asarray(subject.landmarks, float).reshape(-1).tolist(),
        "score": float(subject.score),
        "embedding": _b64(emb),
    }


def main(argv: list[str]) -> int:
    runtimes, photos = argv[0].split(","), argv[1:]
    result: dict[str, Any] = {"machine": platform.machine(), "runtimes": {}}
    for rt in runtimes:
        pipe = FacePipeline.from_config(FaceConfig(runtime=rt, threads=2))
        result["runtimes"][rt] = {
            "embedder_sha256": pipe.embedder_sha256,
            "detector_sha256": pipe.detector.model.sha256,
            "photos": {a.partition("=")[0]: probe(pipe, a.partition("=")[2]) for a in photos},
        }
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
