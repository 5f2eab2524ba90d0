"""Pre-processing: the detector's input fitting (whole-factor reduce, reused canvas, RGB)
and the one-warp alignment, against the plain reference each replaced."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge.config import FaceConfig
from edge.infer.align import TEMPLATE, align_face, similarity_transform, warp_affine
from edge.infer.images import load_image
from edge.infer.pipeline import FacePipeline
from tests.support.faces import PERSON, all_photos, dev_faces, face, pipeline
from tests.support.warp_reference import reference_warp


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_the_detector_takes_the_kiosks_4_3_frame_with_little_padding():
    det = pipeline("litert").detector
    ih, iw = det.input_hw
    assert iw == 320 and ih < 320  # not the padded square any more
    assert det.rgb  # channels reversed at conversion: no per-frame flip


def test_the_detector_runs_at_the_frames_aspect_loading_the_square_file_only_when_needed():
    p = FacePipeline.from_config(FaceConfig(runtime="litert", threads=1))
    det = p.detector
    assert (320, 320) in det._loaders and (320, 320) not in det._inputs
    det.detect(np.zeros((480, 640, 3), np.uint8))  # a kiosk frame: the 4:3 file
    assert list(det._inputs) == [det.input_hw]  # the square file is still not loaded
    faces = det.detect(face(PERSON))  # a square photo: the square file, loaded now
    assert (320, 320) in det._inputs
    assert faces and faces[0].score > 0.8
    sq = det._inputs[(320, 320)]
    assert sq.filled == (320, 320)  # the square photo filled the square canvas


def test_a_640x480_frame_is_reduced_by_an_exact_box_average():
    det = pipeline("litert").detector
    frame = _frame(480, 640)
    canvas, scale = det.letterbox(frame)
    assert scale == 0.5
    want = frame.reshape(240, 2, 320, 2, 3).astype(np.float64).mean(axis=(1, 3))
    got = canvas[0, :240, :320]
    assert np.abs(got - want).max() <= 0.5  # PIL rounds the mean to uint8
    assert not canvas[0, 240:].any()  # the rows below the frame are zero


def test_the_reused_canvas_is_cleared_where_a_smaller_frame_does_not_reach():
    det = pipeline("litert").detector
    det.letterbox(np.full((480, 640, 3), 200, np.uint8))  # fills 240x320
    canvas, scale = det.letterbox(np.full((400, 200, 3), 100, np.uint8))  # portrait: narrower
    nw = round(200 * scale)
    assert canvas[0, :, :nw].min() == 100
    assert not canvas[0, :, nw + 1 :].any()  # no stale pixels from the first frame


def test_detections_match_on_a_frame_and_its_rgb_order():
    """The RGB detector finds the same face as before the channel fold (landmarks sane)."""
    p = pipeline("litert")
    frame = face(PERSON)
    faces = p.detector.detect(frame)
    assert faces and faces[0].score > 0.8
    w = faces[0].box[2]
    assert 0.15 * frame.shape[1] < w < 0.9 * frame.shape[1]
    # the swapped-channel frame is a different picture to a colour-aware detector
    swapped = p.detector.detect(np.ascontiguousarray(frame[:, :, ::-1]))
    assert not swapped or abs(swapped[0].score - faces[0].score) > 1e-4


def test_alignment_gives_the_calibrated_warps_pixels_exactly():
    """Bit for bit the warp faces-dev was calibrated with (issue 22's first pass, PIL's
    8-bit warp, truncated: crops half a level darker; its float mode still differed)."""
    p = pipeline("litert")
    for path in all_photos()[::4]:
        frame = load_image(path)
        lm = p.detector.detect(frame)[0].landmarks
        ref = reference_warp(frame, similarity_transform(lm))
        assert np.array_equal(align_face(frame, lm), ref)
        assert np.array_equal(align_face(Image.fromarray(frame), lm), ref)  # an Image too


def test_alignment_near_the_frame_edge_replicates_the_border_like_the_reference():
    p = pipeline("litert")
    frame = load_image(all_photos()[0])
    lm = p.detector.detect(frame)[0].landmarks
    cut = np.ascontiguousarray(frame[:, int(lm[:, 0].min()) - 8 :])  # the face runs off
    shifted = lm - [int(lm[:, 0].min()) - 8, 0]
    assert np.array_equal(
        align_face(cut, shifted), reference_warp(cut, similarity_transform(shifted))
    )
    big = np.ascontiguousarray(np.pad(frame, ((115, 115), (195, 195), (0, 0))))  # 480x640
    m = similarity_transform(lm + np.array([195.0, 115.0]))
    assert np.array_equal(warp_affine(big, m), reference_warp(big, m))
    assert np.array_equal(warp_affine(big, m, 160), reference_warp(big, m, 160))


def test_alignment_puts_the_landmarks_on_the_template():
    img = np.zeros((300, 200, 3), np.uint8)
    pts = TEMPLATE * 1.5 + [20.0, 30.0]
    for x, y in np.rint(pts).astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
    crop = align_face(img, pts)
    for x, y in np.rint(TEMPLATE).astype(int):
        assert crop[y, x].max() > 100


@pytest.mark.data
def test_alignment_gives_the_reference_warps_embeddings_on_dev_faces():
    """On real dev faces the embeddings of our crop and the calibrated warp's agree to cosine
    0.9999 or better (the 8-bit PIL warp gave 0.9967 mean here, a float-mode one 0.99984:
    the int8 embedder moves by ~1e-3 on a one-level change in three pixels)."""
    p = pipeline("litert")
    cos = []
    for path in all_photos(dev_faces())[::57][:60]:
        frame = load_image(path)
        faces = p.detector.detect(frame)
        if not faces:
            continue
        lm = faces[0].landmarks
        ours = p.embedder.embed(align_face(frame, lm))
        ref = p.embedder.embed(reference_warp(frame, similarity_transform(lm)))
        cos.append(float(ours @ ref))
    assert len(cos) >= 50
    assert min(cos) >= 0.9999, min(cos)
