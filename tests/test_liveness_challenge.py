"""The active challenge (head turn left and right, random order) against stills and prints.

What it was tested on: synthetic pose tracks for the rule itself; and, through the real
detector, prints simulated by warping the bundled photos (flat and bent around a
vertical axis, turned -50..+50 degrees, seen by a pinhole camera). No video of a
person turning their head was available here, so the bona fide pass rate is unmeasured.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from edge.config import FaceConfig, LivenessConfig
from edge.infer.challenge import (
    ChallengeLimits,
    ChallengeTracker,
    PoseSample,
    plan_challenge,
    run_challenge,
)
from edge.infer.images import load_image
from edge.infer.pipeline import FacePipeline
from edge.verification import parse_request
from tests.conftest import run_edge
from tests.test_liveness_records import PAD_SHAS
from tests.test_verification import Outcome, make

REPO = Path(__file__).resolve().parents[1]
PHOTOS = [
    REPO / "tests" / "data" / "pad" / "image_T1.jpg",
    REPO / "tests" / "data" / "pad" / "image_F1.jpg",
    REPO / "edge" / "samples" / "faces" / "grace_hopper.jpg",
    REPO / "edge" / "samples" / "faces" / "eileen_collins.jpg",
]


def track(yaws, dt=0.1, limits=None, steps=("left", "right")):
    t = ChallengeTracker(tuple(steps), limits or ChallengeLimits(turn_yaw=0.35))
    for i, y in enumerate(yaws):
        t.feed(PoseSample(i * dt, y, 100.0, 100.0, 80.0))
    return t


def test_a_real_turn_in_the_asked_order_passes():
    t = track([0.0, 0.05, 0.2, 0.4, 0.42, 0.1, 0.0, -0.2, -0.4, -0.45])
    assert t.passed and t.summary()["passed"] is True and t.summary()["reason"] is None


def test_the_wrong_order_or_one_side_only_fails_on_time():
    t = track([0.0, -0.4, -0.4, 0.0] + [0.0] * 200, steps=("left", "right"))
    assert not t.passed and t.failed is not None and "no head turn left" in t.failed
    t = track([0.0, 0.4, 0.4] + [0.1] * 200)
    assert t.index == 1 and "no head turn right" in (t.failed or "")


def test_a_still_print_fails_even_when_its_face_is_turned():
    assert not track([0.02] * 200).passed
    assert not track([0.45] * 200).passed  # never frontal: a turned portrait does not count


def test_one_frame_beyond_the_turn_is_not_a_turn():
    t = track([0.0, 0.5, 0.0, 0.5, 0.0, -0.5, 0.0] + [0.0] * 200)
    assert not t.passed


def test_a_broken_track_fails():
    t = ChallengeTracker(("left", "right"))
    t.feed(PoseSample(0.0, 0.0, 100, 100, 80))
    t.feed(PoseSample(0.1, 0.0, 400, 100, 80))  # the face jumped 300 px in 0.1 s
    assert t.failed is not None and "jumped" in t.failed
    t = ChallengeTracker(("left", "right"))
    for i in range(10):
        t.feed(PoseSample(i * 0.1, None))
    assert t.failed == "face lost during the challenge"


def test_both_orders_are_asked():
    rng = random.Random(5)
    orders = {plan_challenge("turn", rng) for _ in range(40)}
    assert orders == {("left", "right"), ("right", "left")}
    assert plan_challenge("off") == ()
    with pytest.raises(ValueError):
        plan_challenge("blink")


def warp(img, theta_deg, bend=0.0, f=800.0):
    """A print (flat, or bent into a cylinder of curvature `bend`) turned about its
    vertical axis and seen by a pinhole camera at distance f (forward splat)."""
    h, w = img.shape[:2]
    th = math.radians(theta_deg)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = xs - w / 2, ys - h / 2
    if bend:
        r = 1.0 / bend
        xc, z = r * np.sin(x / r), r * (1 - np.cos(x / r))
    else:
        xc, z = x, np.zeros_like(x)
    xr = xc * math.cos(th) + z * math.sin(th)
    zr = -xc * math.sin(th) + z * math.cos(th) + f
    u = np.round(xr * f / zr + w / 2).astype(int)
    v = np.round(y * f / zr + h / 2).astype(int)
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    out = np.zeros_like(img)
    out[v[ok], u[ok]] = img[ys[ok].astype(int), xs[ok].astype(int)]
    return out


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline.from_config(FaceConfig(runtime="litert"))


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_a_moved_tilted_or_bent_print_fails_the_challenge(pipeline, photo):
    img = load_image(photo)
    frames = [img]
    for bend in (0.0, 1 / 300, 1 / 150, -1 / 150):
        for th in (*range(-50, 51, 10), *range(40, -51, -10)):  # turned one way, then back
            frames.append(warp(img, th, bend))
    poses = [pipeline.pose(f) for f in frames]
    yaws = [p[0] for p in poses if p is not None]
    # the print never shows both turns: whatever the order asked, the challenge fails
    assert not (max(yaws) >= 0.35 and min(yaws) <= -0.35), (min(yaws), max(yaws))
    clock = iter(range(10_000))
    for steps in (("left", "right"), ("right", "left")):
        it = iter(poses * 3)

        def pose(it=it):
            return next(it)

        tracker = run_challenge(
            steps,
            pose,
            limits=ChallengeLimits(turn_yaw=0.35, time_limit_s=len(poses) * 3 - 2),
            clock=lambda: float(next(clock)),
        )
        assert not tracker.passed and tracker.failed is not None


def test_a_failed_challenge_is_a_spoof_record_and_a_passed_one_is_recorded(tmp_path):
    v, decider, (store, *_rest) = make(tmp_path)
    steps_seen: list[str | None] = []

    def failing(on_step):
        on_step("left", 0, 9.5)
        steps_seen.append(v.progress()["challenge"]["step"])
        return {"kind": "turn", "steps": ["left", "right"], "passed": False,
                "reason": "no head turn left within 10 s", "threshold": 0.377,
                "models": PAD_SHAS}  # fmt: skip

    v.challenge = failing
    answer = v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))
    assert steps_seen == ["left"] and v.progress()["challenge"] is None
    assert answer["decision"] == "spoof" and decider.calls == 0  # no burst after a failure
    assert answer["liveness"]["challenge"] == {"passed": False, "steps": ["left", "right"]}
    [rec] = list(store.iter_records())
    assert rec["liveness"]["challenge"]["reason"] == "no head turn left within 10 s"
    assert rec["reason"] == "liveness challenge failed: no head turn left within 10 s"

    class Live(Outcome):
        def liveness_record(self):
            from edge.infer.liveness import decide_liveness

            return decide_liveness([0.9] * 3, 0.377).as_record(PAD_SHAS)

    decider.outcome = Live("match")
    v.challenge = lambda on_step: {"kind": "turn", "steps": ["right", "left"], "passed": True,
                                   "reason": None, "threshold": 0.377, "models": PAD_SHAS}  # fmt: skip
    answer = v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))
    assert answer["decision"] == "match" and answer["liveness"]["challenge"]["passed"] is True


@pytest.mark.slow
def test_edge_verify_with_a_still_photo_fails_the_challenge(write_config, hq_keys, tmp_path):
    """Through the real CLI and pipeline: a still photo cannot turn its head -> spoof, exit 1."""
    import json
    import time

    from edge_hq.roster_build import KpmRow, build_bundle

    from edge.records import canonical_json

    photo = REPO / "tests" / "data" / "pad" / "image_T1.jpg"
    cfg = str(write_config(liveness={"challenge": "turn", "challenge_s": 3.0}))
    assert run_edge("keys", "init", "--config", cfg).returncode == 0
    p = FacePipeline.from_config(FaceConfig(), liveness_cfg=LivenessConfig())
    template = p.analyse(load_image(photo)).embedding
    assert template is not None
    bundle = build_bundle(
        [KpmRow("KPM-T", "sembako", time.strftime("%Y-%m", time.gmtime()), None, 1)],
        {"KPM-T": template}, p.embedder_sha256, hq_keys.signing, now=time.time(),
    )  # fmt: skip
    roster = tmp_path / "roster.json"
    roster.write_bytes(canonical_json(bundle))
    assert run_edge("roster", "import", str(roster), "--config", cfg).returncode == 0
    res = run_edge("verify", "--kpm", "KPM-T", "--image", str(photo), "--json", "--config", cfg)
    assert res.returncode == 1, res.stderr
    answer = json.loads(res.stdout)
    assert answer["decision"] == "spoof" and answer["liveness"]["challenge"]["passed"] is False
    assert answer["reason"].startswith("liveness challenge failed")
    # the same photo without the challenge: the passive check finds a live face (a match)
    cfg2 = str(write_config("edge2.toml", device={"state_dir": str(tmp_path / "s2")}))
    assert run_edge("keys", "init", "--config", cfg2).returncode == 0
    assert run_edge("roster", "import", str(roster), "--config", cfg2).returncode == 0
    res = run_edge("verify", "--kpm", "KPM-T", "--image", str(photo), "--json", "--config", cfg2)
    assert res.returncode == 0 and json.loads(res.stdout)["decision"] == "match", res.stdout
