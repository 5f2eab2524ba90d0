"""Liveness decision logic without a model: crop box, resize, fusion, burst rule, metrics."""

from __future__ import annotations

import numpy as np
import pytest
from edge_tools.evaluation.pad_eval import (
    FrameScore,
    apcer_at,
    decide_presentations,
    presentations,
    rates,
    threshold_at_bpcer,
)

from edge.infer.liveness import decide_liveness, frames_needed
from edge.infer.pad import fuse_real, pad_input, resize_bilinear, scaled_box, softmax
from edge.infer.pipeline import LivenessPolicy


def upstream_box(src_w, src_h, bbox, scale):
    """Upstream CropImage._get_new_box, transcribed line by line (the reference)."""
    x, y, box_w, box_h = bbox
    scale = min((src_h - 1) / box_h, min((src_w - 1) / box_w, scale))
    new_width = box_w * scale
    new_height = box_h * scale
    center_x, center_y = box_w / 2 + x, box_h / 2 + y
    ltx = center_x - new_width / 2
    lty = center_y - new_height / 2
    rbx = center_x + new_width / 2
    rby = center_y + new_height / 2
    if ltx < 0:
        rbx -= ltx
        ltx = 0
    if lty < 0:
        rby -= lty
        lty = 0
    if rbx > src_w - 1:
        ltx -= rbx - src_w + 1
        rbx = src_w - 1
    if rby > src_h - 1:
        lty -= rby - src_h + 1
        rby = src_h - 1
    return int(ltx), int(lty), int(rbx), int(rby)


@pytest.mark.parametrize(
    "box",
    [
        (300, 200, 100, 120),  # centred, fits at 2.7x
        (0, 0, 80, 90),  # at the top-left corner: slides right and down
        (590, 420, 50, 60),  # at the bottom-right border
        (10, 300, 40, 40),  # small face near the left edge
        (100, 50, 400, 420),  # huge face: the scale shrinks to fit
    ],
)
@pytest.mark.parametrize("scale", [2.7, 4.0])
def test_scaled_box_is_upstreams_and_stays_inside_the_frame(box, scale):
    got = scaled_box((640, 480), box, scale)
    assert got == upstream_box(640, 480, box, scale)
    x1, y1, x2, y2 = got
    assert 0 <= x1 <= x2 <= 639 and 0 <= y1 <= y2 <= 479


def test_scaled_box_of_a_degenerate_box_is_clamped_not_negative():
    x1, y1, x2, y2 = scaled_box((640, 480), (-50.0, -80.0, 0.0, 0.0), 4.0)
    assert min(x1, y1) >= 0 and x2 <= 639 and y2 <= 479


def naive_cv2_bilinear(img, out_w, out_h):
    """cv2.INTER_LINEAR semantics, one pixel at a time (half-pixel centres, edge clamp)."""
    h, w = img.shape[:2]
    out = np.zeros((out_h, out_w, img.shape[2]), np.float64)
    for oy in range(out_h):
        sy = min(max((oy + 0.5) * h / out_h - 0.5, 0), h - 1)
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, h - 1)
        fy = sy - y0
        for ox in range(out_w):
            sx = min(max((ox + 0.5) * w / out_w - 0.5, 0), w - 1)
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, w - 1)
            fx = sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[oy, ox] = top * (1 - fy) + bot * fy
    return out


@pytest.mark.parametrize("shape", [(217, 163), (40, 33), (80, 80), (12, 300)])
def test_resize_matches_cv2_linear_semantics(shape):
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    got = resize_bilinear(img, 16, 16)
    want = naive_cv2_bilinear(img.astype(np.float64), 16, 16)
    assert np.abs(got - want).max() < 1e-3


def test_pad_input_is_bgr_0_255_nhwc():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[..., 0] = 200  # red
    x = pad_input(frame, (300, 200, 100, 100), 2.7)
    assert x.shape == (1, 80, 80, 3) and x.dtype == np.float32
    assert np.all(x[..., 2] == 200) and np.all(x[..., 0] == 0)  # red lands in the last channel


def test_fusion_is_the_mean_of_the_softmaxes():
    a = softmax(np.array([0.0, 2.0, 0.0]))
    b = softmax(np.array([3.0, 0.0, 0.0]))
    assert fuse_real([a, b]) == pytest.approx((a[1] + b[1]) / 2)
    assert 0 <= fuse_real([a, b]) <= 1
    assert softmax(np.array([1000.0, 0.0, -1000.0]))[0] == pytest.approx(1.0)  # no overflow


def test_one_lucky_frame_is_not_enough():
    rule = decide_liveness([0.95, 0.1, 0.05, 0.2, 0.1], threshold=0.5, min_live_frames=2)
    assert rule.live is False and rule.frames_live == 1 and rule.needed == 3
    assert rule.score == pytest.approx(0.1)  # the 3rd best: what the record carries


def test_enough_live_frames_make_the_burst_live_and_the_score_audits_it():
    rule = decide_liveness([0.9, 0.8, 0.7, 0.2, 0.95], threshold=0.5, min_live_frames=2)
    assert rule.live is True and rule.frames_live == 4 and rule.needed == 3
    assert rule.score is not None and rule.score >= rule.threshold


def test_too_few_judged_frames_cannot_be_judged():
    rule = decide_liveness([0.99], threshold=0.5, min_live_frames=2)
    assert rule.live is None and rule.score is None and rule.frames_judged == 1
    assert decide_liveness([], 0.5).live is None


def test_frames_needed_follows_count_and_fraction():
    assert frames_needed(5, 2, 0.5) == 3
    assert frames_needed(3, 2, 0.5) == 2
    assert frames_needed(1, 1, 0.0) == 1
    assert frames_needed(10, 1, 0.8) == 8


def test_presentations_are_bursts_of_one_sequence(tmp_path):
    from PIL import Image

    img = Image.new("RGB", (8, 8))
    for folder, names in {
        "0001": ["0001_00_00_01_0.jpg", "0001_00_00_01_12.jpg", "0001_00_00_01_6.jpg"],
        "0002": ["0002_00_00_01_3.jpg", "0002_01_00_01_3.jpg", "lone.jpg"],
    }.items():
        (tmp_path / folder).mkdir()
        for n in names:
            img.save(tmp_path / folder / n)
    items = presentations(tmp_path, burst=2)
    frames = [[p.name for p in it.frames] for it in items]
    assert ["0001_00_00_01_0.jpg", "0001_00_00_01_6.jpg"] in frames  # numeric order
    assert ["0001_00_00_01_12.jpg"] in frames
    assert ["0002_00_00_01_3.jpg"] in frames and ["0002_01_00_01_3.jpg"] in frames
    assert ["lone.jpg"] in frames
    assert {it.folder for it in items} == {"0001", "0002"}
    only = presentations(tmp_path, burst=5, folders=["0002"])
    assert {it.folder for it in only} == {"0002"}


def test_presentation_decisions_use_the_kiosk_rule(tmp_path):
    from edge_tools.evaluation.pad_eval import Presentation

    p = [tmp_path / f"f{i}.jpg" for i in range(6)]
    frames = {
        p[0]: FrameScore("ok", 0.9),
        p[1]: FrameScore("ok", 0.8),
        p[2]: FrameScore("poor_quality", None),
        p[3]: FrameScore("ok", 0.9),
        p[4]: FrameScore("no_face", None),
        p[5]: FrameScore("poor_quality", None),
    }
    items = [Presentation("a", (p[0], p[1], p[2])), Presentation("a", (p[3], p[4], p[5]))]
    out = decide_presentations(items, frames, LivenessPolicy(0.5, 2, 0.5))
    assert out[0].score == pytest.approx(0.8)  # two judged, both live
    assert out[1].score is None  # one judged frame: failure to acquire


def test_iso_rates_on_known_scores():
    bona = np.array([0.9, 0.8, 0.7, 0.3, 0.95])
    attack = np.array([0.01, 0.02, 0.6, 0.05])
    r = rates(bona, attack, 0.5)
    assert r["apcer"] == pytest.approx(0.25) and r["bpcer"] == pytest.approx(0.2)
    assert r["apcer_errors"] == 1 and r["bpcer_errors"] == 1
    # APCER <= 1% needs a threshold just above the highest attack (0.6): only 0.3 falls below
    assert r["bpcer100"] == pytest.approx(0.2)
    assert apcer_at(attack, r["bpcer100_threshold"]) <= 0.01


def test_threshold_at_bpcer_keeps_bpcer_at_or_below_target():
    rng = np.random.default_rng(3)
    bona = rng.uniform(0, 1, 1000)
    for target in (0.0, 0.01, 0.05):
        t = threshold_at_bpcer(bona, target)
        assert np.mean(bona < t) <= target + 1e-12
        assert np.mean(bona < np.nextafter(t, 2)) > target - 1e-3  # and it is the highest
