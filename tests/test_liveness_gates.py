"""Liveness quality gates (edge/infer/pad_gates.py): frames too poor to judge are not judged.

Pure parts (measures, gate order and reasons, config -> limits, the burst's reason) without
models; then the real pipeline on an upstream sample photo burnt out like midday sun.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config import LivenessConfig
from edge.infer.liveness import decide_liveness
from edge.infer.pad_gates import (
    PadLimits,
    PadQuality,
    face_region,
    measure_pad,
    noise_sigma,
    pad_gate,
)
from edge.infer.pipeline import FaceResult, LivenessPolicy, not_judged_reason

PAD = Path(__file__).resolve().parent / "data" / "pad"


def test_noise_sigma_reads_gaussian_noise_and_ignores_smooth_structure():
    rng = np.random.default_rng(1)
    flat = np.full((200, 200), 100.0) + rng.normal(0, 10, (200, 200))
    assert noise_sigma(flat) == pytest.approx(10.0, rel=0.1)
    yy, xx = np.mgrid[0:200, 0:200]
    ramp = (0.5 * xx + 0.3 * yy).astype(np.float32)  # a plane: the mask cancels it
    assert noise_sigma(ramp) < 0.01
    assert noise_sigma(np.zeros((2, 2))) == 0.0


def test_face_region_clamps_the_box_into_the_frame():
    frame = np.zeros((100, 120, 3), np.uint8)
    assert face_region(frame, (-20, -10, 50, 40)).shape == (30, 30, 3)
    assert face_region(frame, (110, 90, 50, 50)).shape == (10, 10, 3)
    assert face_region(frame, (500, 500, 10, 10)).shape == (1, 1, 3)  # never empty


def test_measure_pad_counts_burnt_out_pixels_in_the_face_box_only():
    frame = np.full((100, 100, 3), 120, np.uint8)
    frame[0:50, 0:50] = 255  # the upper-left quarter of the frame is burnt out
    frame[60:80, 60:80, 1] = 252  # one channel clipped counts too
    q = measure_pad(frame, (0, 0, 100, 100), sharpness=55.0)
    assert q.clipped == pytest.approx((2500 + 400) / 10000)
    assert q.face_px == 100 and q.sharpness == 55.0
    assert measure_pad(frame, (50, 0, 50, 50), 1.0).clipped == 0.0  # outside the box


def _q(**kw: float) -> PadQuality:
    base = {"clipped": 0.0, "noise": 2.0, "face_px": 150.0, "sharpness": 100.0}
    base.update(kw)
    return PadQuality(**base)


def test_gates_pass_a_good_frame_and_default_limits_are_off():
    limits = PadLimits(max_clipped=0.1, max_noise=5.0, min_face_px=80, min_sharpness=30)
    assert pad_gate(_q(), limits) is None
    worst = _q(clipped=1.0, noise=200.0, face_px=1.0, sharpness=0.0)
    assert pad_gate(worst, PadLimits()) is None


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"face_px": 60.0}, "move closer"),
        ({"clipped": 0.4}, "move out of direct sunlight"),
        ({"noise": 9.0}, "turn on a light"),
        ({"sharpness": 10.0}, "hold still"),
    ],
)
def test_each_gate_gives_a_reason_the_officer_can_act_on(kw, words):
    limits = PadLimits(max_clipped=0.1, max_noise=5.0, min_face_px=80, min_sharpness=30)
    reason = pad_gate(_q(**kw), limits)
    assert reason is not None and "liveness check" in reason and words in reason


def test_policy_takes_the_gates_from_the_config():
    cfg = LivenessConfig(max_clipped=0.2, max_noise=7.5, min_face_px=90, min_sharpness=25.0)
    limits = LivenessPolicy.from_config(cfg).limits
    assert limits == PadLimits(0.2, 7.5, 90, 25.0)


def test_a_burst_of_refused_frames_names_the_commonest_gate():
    bright = "too bright for the liveness check (40% of the face burnt out): move out of ..."
    results = [
        FaceResult("ok", liveness_reason=bright),
        FaceResult("ok", liveness_reason=bright.replace("40%", "55%")),
        FaceResult("ok", liveness_reason="too dark or grainy for the liveness check (noise 9)"),
        FaceResult("ok", liveness=0.9),
        FaceResult("poor_quality", "blurred"),
    ]
    scores = [r.liveness for r in results if r.liveness is not None]
    lv = decide_liveness(scores, 0.377, 2, 0.5)
    assert lv.live is None  # one judged frame, two needed
    reason = not_judged_reason(results, lv)
    assert reason.startswith("liveness: 1 of 5 frames usable, need 2; too bright")
    plain = not_judged_reason([FaceResult("ok", liveness=0.9)], lv)
    assert plain.endswith("hold still facing the camera")


@pytest.fixture(scope="module")
def gated():
    from edge.config import FaceConfig
    from edge.infer.pipeline import FacePipeline

    return FacePipeline.from_config(
        FaceConfig(runtime="litert"), liveness_cfg=LivenessConfig(max_clipped=0.3)
    )


def test_a_sunburnt_burst_is_poor_quality_with_the_reason_not_spoof(gated):
    from edge.infer.images import load_image

    frame = load_image(PAD / "image_T1.jpg")
    ref = gated.analyse(frame).embedding
    assert ref is not None
    ok = gated.analyse(frame)
    assert ok.liveness is not None and ok.liveness_reason is None
    # x1.6: the face gates still pass (mean brightness about 184 < 220), yet two thirds
    # of the face box is burnt out
    burnt = np.clip(frame.astype(np.float32) * 1.6, 0, 255).astype(np.uint8)
    r = gated.analyse(burnt)
    assert r.status == "ok" and r.embedding is not None  # matching may still use it
    assert r.liveness is None and r.pad_quality is not None and r.pad_quality.clipped > 0.3
    d = gated.verify_burst([burnt] * 3, [ref])
    assert d.decision == "poor_quality" and "move out of direct sunlight" in (d.reason or "")
    assert d.liveness is not None and d.liveness.frames_judged == 0
