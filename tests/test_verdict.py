"""edge/verdict.py: the pure rules of one verification, exactly (no store, camera or key)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from edge import verdict
from edge.eligibility import ALREADY_SERVED, Eligibility
from edge.roster import RosterEntry

ENTRY = RosterEntry("KPM-1", "sembako", "2026-11", (b"\0" * 512,), None)
SUMMARY = {"kind": "turn", "steps": ["left"], "passed": False, "reason": "timeout"}


def test_record_target_never_guesses() -> None:
    assert verdict.record_target(ENTRY, "pkh", "2025-01", {}) == ("sembako", "2026-11")
    one = {"sembako": "2026-11"}
    assert verdict.record_target(None, None, None, one) == ("unknown", "2026-11")
    assert verdict.record_target(None, "pkh", None, one) == ("pkh", "unknown")
    two = {"sembako": "2026-11", "pkh": "2026-10"}
    assert verdict.record_target(None, None, None, two) == ("unknown", "unknown")
    assert verdict.record_target(None, "pkh", None, two) == ("pkh", "2026-10")
    assert verdict.record_target(None, None, "2026-09", two) == ("unknown", "2026-09")


def test_refusal_names_an_unsynced_clock_only_for_not_eligible() -> None:
    ne = Eligibility(None, "not_eligible", "not_on_roster: KPM-1", "not_on_roster")
    assert verdict.refusal(ne, "unsynced").reason == "not_on_roster: KPM-1 (kiosk clock unsynced)"
    assert verdict.refusal(ne, "gps").reason == "not_on_roster: KPM-1"
    served = Eligibility(ENTRY, "already_served", "served", ALREADY_SERVED)
    o = verdict.refusal(served, "unsynced")
    assert (o.decision, o.reason, o.captured) == ("already_served", "served", False)


def test_manual_after_a_spoof_says_so() -> None:
    assert verdict.manual("  card checked  ", None).reason == "card checked"
    o = verdict.manual("card checked", "rec-9")
    assert (o.decision, o.reason) == ("manual", "override after spoof (record rec-9): card checked")


def test_failed_challenge_is_a_spoof_record_naming_the_camera() -> None:
    o = verdict.challenge_failed({**SUMMARY, "threshold": 0.5, "models": ("a", "b")})
    assert (o.decision, o.captured) == ("spoof", True)
    assert o.reason == "liveness challenge failed: timeout"
    assert o.liveness is not None and o.liveness["models"] == ["a", "b"]
    assert o.liveness["challenge"] == SUMMARY


@dataclass
class Result:
    decision: str = "match"
    score: float = 0.71
    threshold: float = 0.5
    frames_used: int = 3

    def liveness_record(self) -> dict[str, Any]:
        return {"score": 0.9, "threshold": 0.6, "frames_live": 3, "frames_judged": 3}


def test_face_result_and_the_lost_race() -> None:
    o = verdict.face_result(Result(), SUMMARY, 5)
    assert (o.decision, o.score, o.frames_used, o.frames_total, o.captured) == (
        "match", 0.71, 3, 5, True,
    )  # fmt: skip
    assert o.liveness is not None and o.liveness["challenge"] == SUMMARY
    v = verdict.verification(
        "KPM-1", "o1", ("sembako", "2026-11"), o, model="m" * 64, captured_at=1.0,
        clock="gps", geo=None, geofence="no_fix", camera="replay",
    )  # fmt: skip
    assert (v.camera, v.score, v.frames_used) == ("replay", 0.71, 3)
    not_captured = verdict.Outcome("not_eligible", "x")
    assert verdict.verification(
        "KPM-1", "o1", ("sembako", "2026-11"), not_captured, model="m" * 64,
        captured_at=1.0, clock="gps", geo=None, geofence="no_fix", camera="replay",
    ).camera is None  # fmt: skip
    final = replace(v, decision="already_served", reason="served meanwhile")
    elig = Eligibility(ENTRY, None, None)
    earlier = {"record_id": "r-1", "seq": 4}
    lost, new_elig = verdict.lost_race(o, final, elig, earlier)
    assert (lost.decision, lost.score, lost.frames_used, lost.liveness) == (
        "already_served", None, 0, None,
    )  # fmt: skip
    assert lost.frames_total == 5  # the frames were taken all the same
    assert (new_elig.decision, new_elig.code, new_elig.earlier) == (
        "already_served", ALREADY_SERVED, earlier,
    )  # fmt: skip
    record = {"id": "r-2", "seq": 5, "score": None, "threshold": None, "captured_at": "T"}
    ans = verdict.answer("KPM-1", ("sembako", "2026-11"), lost, new_elig, record, "no_fix", "gps")
    assert (ans["reason_code"], ans["earlier"], ans["liveness"]) == (ALREADY_SERVED, earlier, None)
    plain = verdict.answer("KPM-1", ("sembako", "2026-11"), o, elig, record, "no_fix", "gps")
    assert plain["reason_code"] is None  # match is not the eligibility's decision
    assert plain["liveness"] == {
        "score": 0.9, "threshold": 0.6, "frames_live": 3, "frames_judged": 3,
        "challenge": {"passed": False, "steps": ["left"]},
    }  # fmt: skip
