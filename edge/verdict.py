"""The pure half of a verification: what a decision means for the record and the answer.

No store, camera, clock or key here; edge/verification.py does the I/O (roster and
ledger reads, the burst, the signed append) and calls these steps in order, so each rule
(which programme/period a record names, a refusal's wording, a failed challenge's
record, a face result's fields, the lost-race rewrite, the API answer) is stated once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from edge.eligibility import ALREADY_SERVED, Eligibility
from edge.records import NO_PROGRAMME, Verification
from edge.roster import RosterEntry


@dataclass
class Outcome:
    """A decision and what the record says with it (before the record is built)."""

    decision: str
    reason: str | None
    score: float | None = None
    threshold: float | None = None
    frames_used: int = 0
    frames_total: int = 0
    evidence: dict[str, str] | None = None
    liveness: dict[str, Any] | None = None
    captured: bool = False  # frames were taken (challenge or burst): the record names the camera
    override: bool = False  # a manual handover over an earlier one


def record_target(
    entry: RosterEntry | None,
    programme: str | None,
    period: str | None,
    current: Mapping[str, str],
) -> tuple[str, str]:
    """The programme and period the record names.

    With a roster entry: the entry's. Without: the programme asked for (or `unknown`), the
    period asked for (or the one the kiosk serves now for it, or `unknown`); never a guess.
    """
    if entry is not None:
        return entry.programme, entry.period
    served_now = sorted({v for p, v in current.items() if programme in (None, p)})
    return (
        programme or NO_PROGRAMME,
        period or (served_now[0] if len(served_now) == 1 else "unknown"),
    )


def refusal(elig: Eligibility, clock: str) -> Outcome:
    """The eligibility check said no (not_eligible, already_served, ...)."""
    assert elig.decision is not None
    reason = elig.reason
    if elig.decision == "not_eligible" and clock == "unsynced":
        reason = f"{reason} (kiosk clock unsynced)"
    return Outcome(elig.decision, reason)


def override_text(earlier: Mapping[str, Any], manual_reason: str) -> str:
    return f"override of already_served (record {earlier['record_id']}): {manual_reason.strip()}"


def manual(manual_reason: str, spoof_record: str | None) -> Outcome:
    """A manual handover after a failed face check; one after a spoof says so, for HQ."""
    reason = manual_reason.strip()
    if spoof_record is not None:
        reason = f"override after spoof (record {spoof_record}): {reason}"
    return Outcome("manual", reason)


def challenge_failed(summary: Mapping[str, Any]) -> Outcome:
    """The active challenge failed: a spoof record with the challenge and PAD models."""
    return Outcome(
        "spoof",
        f"liveness challenge failed: {summary['reason']}",
        captured=True,
        liveness={
            "score": None,
            "threshold": summary["threshold"],
            "frames_judged": 0,
            "frames_live": 0,
            "needed": 0,
            "models": list(summary["models"]),
            "challenge": challenge_part(summary),
        },
    )


def face_result(result: Any, summary: Mapping[str, Any] | None, frames_total: int) -> Outcome:
    """The face decider's result (duck-typed: decision plus optional fields) as an Outcome."""
    liveness_record = getattr(result, "liveness_record", None)
    liveness = liveness_record() if callable(liveness_record) else None
    if liveness is not None and summary is not None:
        liveness["challenge"] = challenge_part(summary)
    return Outcome(
        str(result.decision),
        getattr(result, "reason", None),
        score=getattr(result, "score", None),
        threshold=getattr(result, "threshold", None),
        frames_used=int(getattr(result, "frames_used", 0)),
        frames_total=frames_total,
        liveness=liveness,
        captured=True,
    )


def verification(
    kpm_id: str,
    officer_id: str,
    target: tuple[str, str],
    o: Outcome,
    *,
    model: str,
    captured_at: float,
    clock: str,
    geo: dict[str, Any] | None,
    geofence: str,
    camera: str | None,
) -> Verification:
    """The record's content; the camera is named only when frames were taken."""
    return Verification(
        kpm_id=kpm_id,
        programme=target[0],
        period=target[1],
        officer_id=officer_id,
        decision=o.decision,
        score=None if o.score is None else float(o.score),
        threshold=None if o.threshold is None else float(o.threshold),
        model=model,
        captured_at=captured_at,
        clock=clock,
        geo=geo,
        geofence=geofence,
        frames_used=o.frames_used,
        reason=o.reason,
        evidence=o.evidence,
        liveness=o.liveness,
        camera=camera if o.captured else None,
    )


def lost_race(
    o: Outcome, final: Verification, elig: Eligibility, earlier: Mapping[str, Any] | None
) -> tuple[Outcome, Eligibility]:
    """Another writer served this KPM while we ran: the answer says already_served."""
    o = replace(o, decision=final.decision, reason=final.reason)
    o = replace(o, score=None, frames_used=0, liveness=None)
    return o, replace(elig, decision=o.decision, code=ALREADY_SERVED, earlier=earlier)


def answer(
    kpm_id: str,
    target: tuple[str, str],
    o: Outcome,
    elig: Eligibility,
    record: Mapping[str, Any],
    geofence: str,
    clock: str,
) -> dict[str, Any]:
    """What the API and CLI return (the record's own rounded score and time)."""
    return {
        "record_id": record["id"],
        "seq": record["seq"],
        "kpm_id": kpm_id,
        "programme": target[0],
        "period": target[1],
        "decision": o.decision,
        "reason": o.reason,
        "reason_code": elig.code if o.decision == elig.decision else None,
        "earlier": dict(elig.earlier) if elig.earlier is not None else None,
        "score": record["score"],
        "threshold": record["threshold"],
        "frames_used": o.frames_used,
        "frames_total": o.frames_total,
        "geofence": geofence,
        "clock": clock,
        "captured_at": record["captured_at"],
        "liveness": liveness_answer(o.liveness),
    }


def challenge_part(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("kind", "steps", "passed", "reason")}


def liveness_answer(liveness: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the API tells the screen about PAD: score, threshold, frame counts (no hashes)."""
    if liveness is None:
        return None
    out = {k: liveness[k] for k in ("score", "threshold", "frames_live", "frames_judged")}
    ch = liveness.get("challenge")
    out["challenge"] = None if ch is None else {"passed": ch["passed"], "steps": ch["steps"]}
    return out
