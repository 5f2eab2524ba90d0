"""Pure parts of the face pipeline: metrics, YuNet decoding, alignment, gates, burst rule."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import BadInput
from edge.infer import metrics
from edge.infer.align import TEMPLATE, align_face, similarity_transform, warp_affine
from edge.infer.matcher import FrameOutcome, best_score, decide_burst, mean_template
from edge.infer.quality import Quality, QualityLimits, gate, laplacian_variance, pose_from_landmarks
from edge.infer.yunet import Detection, decode, nms, pick_subject, to_detections


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def test_threshold_at_fmr_allows_at_most_the_target_share_of_impostors():
    imp = np.arange(1000, dtype=np.float64) / 1000.0  # 0.000 .. 0.999
    t = metrics.threshold_at_fmr(imp, 0.01)
    assert metrics.fmr_at(imp, t) <= 0.01
    assert metrics.fmr_at(imp, t - 0.0011) > 0.01  # and it is the lowest such threshold
    assert metrics.fnmr_at(np.array([0.5, 0.985, 0.995]), t) == pytest.approx(2 / 3)


def test_eer_of_overlapping_uniforms():
    gen = np.linspace(0.2, 1.0, 8001)
    imp = np.linspace(0.0, 0.8, 8001)
    e, t = metrics.eer(gen, imp)
    assert e == pytest.approx(0.375, abs=0.01)
    assert t == pytest.approx(0.5, abs=0.01)


def test_summary_reports_each_fmr():
    rng = np.random.default_rng(1)
    s = metrics.summary(rng.normal(0.7, 0.1, 2000), rng.normal(0.0, 0.1, 200_000))
    assert set(s["at_fmr"]) == {"0.01", "0.001", "0.0001"}  # type: ignore[call-overload]
    fnmr = [s["at_fmr"][k]["fnmr"] for k in ("0.01", "0.001", "0.0001")]  # type: ignore[index]
    assert fnmr == sorted(fnmr)  # stricter FMR never lowers FNMR


def _fake_outputs(hw: tuple[int, int], cell: tuple[int, int, int], score: float) -> dict:
    out = {}
    for s in (8, 16, 32):
        n = (hw[0] // s) * (hw[1] // s)
        out[f"cls_{s}"] = np.zeros((1, n, 1), np.float32)
        out[f"obj_{s}"] = np.zeros((1, n, 1), np.float32)
        out[f"bbox_{s}"] = np.zeros((1, n, 4), np.float32)
        out[f"kps_{s}"] = np.zeros((1, n, 10), np.float32)
    stride, r, c = cell
    idx = r * (hw[1] // stride) + c
    out[f"cls_{stride}"][0, idx, 0] = score
    out[f"obj_{stride}"][0, idx, 0] = score
    out[f"bbox_{stride}"][0, idx] = [0.5, 0.5, np.log(4.0), np.log(5.0)]
    out[f"kps_{stride}"][0, idx] = [0.1, 0.2] * 5
    return out


def test_yunet_decode_places_box_and_landmarks_in_the_cell():
    boxes, kps, scores = decode(_fake_outputs((320, 320), (16, 3, 5), 0.9), (320, 320), 0.5)
    assert scores.tolist() == pytest.approx([0.9])
    cx, cy = (5 + 0.5) * 16, (3 + 0.5) * 16
    assert boxes[0].tolist() == pytest.approx([cx - 32, cy - 40, cx + 32, cy + 40])
    assert kps[0, 0].tolist() == pytest.approx([(5 + 0.1) * 16, (3 + 0.2) * 16])
    dets = to_detections(boxes, kps, scores, scale=2.0)
    assert dets[0].box[2] == pytest.approx(32.0)  # back in frame pixels
    empty = decode(_fake_outputs((320, 320), (16, 3, 5), 0.4), (320, 320), 0.5)
    assert empty[0].shape == (0, 4)


def test_nms_drops_overlapping_boxes_keeps_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    assert nms(boxes, np.array([0.8, 0.9, 0.7])) == [1, 2]


def test_pick_subject_prefers_the_central_face_among_large_ones():
    lm = np.zeros((5, 2), np.float32)
    edge_face = Detection((0, 0, 100, 100), lm, 0.9)
    centre = Detection((100, 100, 90, 90), lm, 0.8)
    tiny = Detection((140, 140, 10, 10), lm, 0.99)
    assert pick_subject([edge_face, centre, tiny], (300, 300)) is centre
    assert pick_subject([], (300, 300)) is None


def test_similarity_transform_recovers_a_known_transform():
    ang, s, t = 0.3, 1.7, np.array([12.0, -5.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    src = (TEMPLATE - t) @ np.linalg.inv(s * rot).T  # points that map onto the template
    m = similarity_transform(src)
    assert (src @ m[:, :2].T + m[:, 2]) == pytest.approx(TEMPLATE, abs=1e-6)


def test_warp_affine_identity_and_alignment_shape():
    img = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    same = warp_affine(img, np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    assert np.array_equal(same, img)
    crop = align_face(np.zeros((300, 200, 3), np.uint8), TEMPLATE * 2)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8


def test_pose_and_blur_measures():
    frontal = TEMPLATE.copy()
    assert abs(pose_from_landmarks(frontal)[0]) < 0.05
    turned = frontal.copy()
    turned[2, 0] += 20  # nose far to one side
    assert pose_from_landmarks(turned)[0] > 0.5
    tilted = frontal @ np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]]).T
    assert abs(pose_from_landmarks(tilted)[1]) == pytest.approx(0.6, abs=0.02)
    noise = np.random.default_rng(0).uniform(0, 255, (64, 64)).astype(np.float32)
    assert laplacian_variance(noise) > 100 * laplacian_variance(
        np.full((64, 64), 9.0) + 1e-3 * noise
    )


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"face_px": 30.0}, "small"),
        ({"pose": 0.9}, "turned"),
        ({"brightness": 10.0}, "dark"),
        ({"brightness": 250.0}, "bright"),
        ({"sharpness": 1.0}, "blurred"),
    ],
)
def test_each_gate_names_its_reason(change, word):
    good = Quality(face_px=120, sharpness=300, pose=0.1, yaw=0.1, roll=0.0, brightness=120)
    assert gate(good, QualityLimits()) is None
    bad = Quality(**{**good.__dict__, **change})
    reason = gate(bad, QualityLimits())
    assert reason is not None and word in reason


def test_burst_rule():
    ref = unit(1)
    near = ref + 0.3 * unit(2)
    ok = FrameOutcome("ok", None, 1.0, near / np.linalg.norm(near))
    other = FrameOutcome("ok", None, 0.5, unit(3))
    blurred = FrameOutcome("poor_quality", "blurred (sharpness 3.0 < 20.0)", -1, None)
    none = FrameOutcome("no_face", "no face found", float("-inf"), None)

    r = decide_burst([ok, blurred, none], [ref], threshold=0.5)
    assert r.decision == "match" and r.used == (0,) and r.score is not None and r.score > 0.9
    assert decide_burst([other], [ref], 0.5).decision == "no_match"
    assert decide_burst([none, none], [ref], 0.5).decision == "no_face"
    pq = decide_burst([blurred, none, blurred], [ref], 0.5)
    assert pq.decision == "poor_quality" and pq.reason is not None and "blurred" in pq.reason
    assert decide_burst([ok, blurred], [ref], 0.5, min_good_frames=2).decision == "poor_quality"
    many = decide_burst([ok, ok, ok, ok, other], [ref], 0.5)
    assert len(many.used) == 3 and 4 not in many.used  # best-ranked three, fused


def test_templates_and_scores_refuse_bad_vectors():
    t = mean_template([unit(1), unit(2)])
    assert np.linalg.norm(t) == pytest.approx(1.0, abs=1e-6)
    assert best_score(unit(1), [unit(5), unit(1)]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(BadInput):
        best_score(unit(1), [])
    with pytest.raises(BadInput):
        best_score(unit(1), [np.zeros(128)])
    with pytest.raises(BadInput):
        best_score(np.ones(64), [unit(1)])
    with pytest.raises(BadInput):
        mean_template([])


def test_impostor_pairs_all_or_a_seeded_distinct_sample():
    from edge_tools.evaluation.evaluate import genuine_pairs, impostor_pairs

    small = np.array([0, 0, 1, 2, 2, 2])
    i, j = impostor_pairs(small, 200_000)
    assert len(i) == 15 - 1 - 3 and (small[i] != small[j]).all()  # all but the 4 genuine
    gi, gj = genuine_pairs(small)
    assert len(gi) == 4 and (small[gi] == small[gj]).all()
    big = np.repeat(np.arange(1500), 3)  # ~10M impostor pairs: sampled
    a = impostor_pairs(big, 200_000)
    b = impostor_pairs(big, 200_000)
    assert len(a[0]) == 200_000 and (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert (big[a[0]] != big[a[1]]).all() and (a[0] < a[1]).all()
    assert len(set(zip(a[0].tolist(), a[1].tolist(), strict=True))) == 200_000
