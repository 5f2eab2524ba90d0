"""One verification, start to finish: eligibility, burst, decision, geotag, signed record.

The parts arrive as small callables and protocols (camera burst, face decider,
where/when), so this module imports none of capture, infer or uplink; the daemon
and `edge verify` wire real ones, tests may wire others.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from nacl.public import PublicKey
from nacl.signing import SigningKey

from bansos_contract.ids import TEXT_ID as _ID
from edge.eligibility import ALREADY_SERVED, check_eligibility, describe_earlier
from edge.errors import EXIT_NEGATIVE, EdgeError
from edge.period import period_problem
from edge.records import (
    FAILED_DECISIONS,
    NO_PROGRAMME,
    PROGRAMMES,
    Evidence,
    Verification,
    build_record,
    control_character,
    seal_evidence,
)
from edge.roster import RosterEntry
from edge.store import OutboxFull, OutboxLimits, Store

log = logging.getLogger(__name__)


FACE_DECISIONS = ("match", "no_match", "spoof", "no_face", "poor_quality")


class BadRequest(ValueError):
    """The request itself is wrong (HTTP 400, exit 2)."""


class AttemptsUsed(EdgeError):
    """This officer used every face attempt for this KPM and period (HTTP 409, exit 1):
    only a manual handover (with the ID card checked) may follow."""

    exit_code = EXIT_NEGATIVE

    def __init__(self, max_attempts: int, kpm_id: str, programme: str, period: str) -> None:
        super().__init__(
            f"{max_attempts} face attempts used for {kpm_id} {programme} {period}: check the "
            "ID card and record a manual handover (manual_reason)"
        )
        self.max_attempts = max_attempts


class FaceDecider(Protocol):
    embedder_sha256: str

    def verify_burst(
        self, frames: Sequence[np.ndarray], references: Sequence[np.ndarray]
    ) -> Any: ...


@dataclass(frozen=True)
class Request:
    kpm_id: str
    officer_id: str
    programme: str | None = None
    period: str | None = None
    manual_reason: str | None = None


def parse_request(obj: dict[str, Any]) -> Request:
    """Strictly validate an API/CLI request; BadRequest names the field."""
    allowed = {"kpm_id", "officer_id", "programme", "period", "manual_reason"}
    extra = set(obj) - allowed
    if extra:
        raise BadRequest(
            f"unknown field {sorted(extra)[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    for key in ("kpm_id", "officer_id"):
        value = obj.get(key)
        if not isinstance(value, str) or not _ID.match(value):
            raise BadRequest(f"{key}: expected 1-64 letters, digits or ._:/- , got {value!r}")
    programme = obj.get("programme")
    if programme is not None and programme not in PROGRAMMES:
        raise BadRequest(f"programme: expected one of {', '.join(PROGRAMMES)}")
    period = obj.get("period")
    if period is not None and period_problem(period) is not None:
        raise BadRequest(f"period: {period_problem(period)}")
    reason = obj.get("manual_reason")
    if reason is not None and (not isinstance(reason, str) or not 5 <= len(reason.strip()) <= 500):
        raise BadRequest("manual_reason: expected 5-500 characters saying why")
    bad = control_character(reason) if isinstance(reason, str) else None
    if bad is not None:
        raise BadRequest(f"manual_reason: control character {bad} not allowed; one line of text")
    return Request(obj["kpm_id"], obj["officer_id"], programme, period, reason)


@dataclass(frozen=True)
class Geotag:
    geo: dict[str, Any] | None
    fix: Any


Where = Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, str]]
# on_step(step, index, seconds_left) -> the challenge's summary: {kind, steps, passed,
# reason} plus the liveness "threshold" and PAD "models" (for a failed challenge's record)
OnStep = Callable[[str | None, int, float], None]
Challenge = Callable[[OnStep], dict[str, Any]]
When = Callable[[], tuple[float, str]]
Burst = Callable[[int], list[np.ndarray]]


def crop_jpeg(crop: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop, dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class Verifier:
    """Runs verifications one at a time (one camera) and commits their records."""

    def __init__(
        self,
        *,
        store: Store,
        decider: FaceDecider,
        burst: Burst,
        burst_frames: int,
        where: Where,
        when: When,
        key: SigningKey,
        device_id: str,
        hq_box_key: PublicKey | None,
        limits: OutboxLimits | None,
        challenge: Challenge | None = None,
        camera: str | None = None,
        max_attempts: int | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.store = store
        self.decider = decider
        self.burst = burst
        self.burst_frames = burst_frames
        self.where = where
        self.when = when
        self.key = key
        self.device_id = device_id
        self.hq_box_key = hq_box_key
        self.limits = limits
        self.challenge = challenge
        self.camera = camera  # the backend's name, recorded with every captured decision
        self.max_attempts = (
            max_attempts  # face checks per officer, KPM and period (ui.max_attempts)
        )
        self._earlier: Mapping[str, Any] | None = None  # the handover a racing writer made
        # shared by the verifiers a reload builds, so "one at a time" holds across a reload
        self.lock = lock if lock is not None else threading.Lock()
        self._progress_lock = threading.Lock()
        self._progress: dict[str, Any] = {"challenge": None}

    def progress(self) -> dict[str, Any]:
        """What the screen should ask for right now (the active challenge's step)."""
        with self._progress_lock:
            return dict(self._progress)

    def _on_step(self, step: str | None, index: int, seconds_left: float) -> None:
        with self._progress_lock:
            self._progress["challenge"] = (
                None
                if step is None
                else {"step": step, "index": index, "seconds_left": round(seconds_left, 1)}
            )

    def verify(self, req: Request) -> dict[str, Any]:
        """Decide and commit; returns the answer. Raises OutboxFull when nothing may be stored."""
        with self.lock:
            return self._verify(req)

    def _verify(self, req: Request) -> dict[str, Any]:
        captured_at, clock = self.when()
        entries = self.store.roster_entries(req.kpm_id)
        current = self.store.current_periods(captured_at)
        elig = check_eligibility(
            entries,
            lambda e: self.store.served_by(e.kpm_id, e.programme, e.period),
            req.programme,
            req.period,
            now=captured_at,
            current=current,
        )
        entry = elig.entry
        if entry is not None:
            programme, period = entry.programme, entry.period
        else:
            # on no roster entry: the programme asked for (or `unknown`), the period asked
            # for (or the one the kiosk serves now for it, or `unknown`); never a guess
            programme = req.programme or NO_PROGRAMME
            served_now = sorted({v for p, v in current.items() if req.programme in (None, p)})
            period = req.period or (served_now[0] if len(served_now) == 1 else "unknown")
        place = entry.place if entry else None
        geo, geofence = self.where(place)
        score: float | None = None
        threshold: float | None = None
        frames_used = 0
        frames_total = 0
        evidence = None
        liveness: dict[str, Any] | None = None
        captured = False  # frames were taken (challenge or burst): the record names the camera
        reason: str | None
        override = False
        if elig.decision == "already_served" and req.manual_reason is not None:
            assert entry is not None and elig.earlier is not None
            decision, reason = "manual", self._override(entry, elig.earlier, req.manual_reason)
            override = True
        elif elig.decision is not None:
            decision, reason = elig.decision, elig.reason
            if elig.decision == "not_eligible" and clock == "unsynced":
                reason = f"{reason} (kiosk clock unsynced)"
        elif req.manual_reason is not None:
            assert entry is not None
            if self._last_failure(entry.kpm_id, entry.programme, entry.period) is None:
                raise BadRequest("manual_reason: a manual handover needs a failed face check first")
            decision, reason = "manual", req.manual_reason.strip()
            spoof = self._last_failure(entry.kpm_id, entry.programme, entry.period, ("spoof",))
            if spoof is not None:
                # HQ must see that the officer overrode a suspected presentation attack
                reason = f"override after spoof (record {spoof}): {reason}"
        elif (summary := self._run_challenge(req.officer_id, entry)) is not None and not summary[
            "passed"
        ]:
            decision = "spoof"
            captured = True
            reason = f"liveness challenge failed: {summary['reason']}"
            liveness = {
                "score": None,
                "threshold": summary["threshold"],
                "frames_judged": 0,
                "frames_live": 0,
                "needed": 0,
                "models": list(summary["models"]),
                "challenge": _challenge_part(summary),
            }
        else:
            assert entry is not None
            self._check_attempts(req.officer_id, entry)
            frames = self.burst(self.burst_frames)
            captured = True
            frames_total = len(frames)
            result = self.decider.verify_burst(frames, entry.template_arrays())
            decision = str(result.decision)
            reason = getattr(result, "reason", None)
            score = getattr(result, "score", None)
            threshold = getattr(result, "threshold", None)
            frames_used = int(getattr(result, "frames_used", 0))
            crop = getattr(result, "crop", None)
            embedding = getattr(result, "embedding", None)
            liveness_record = getattr(result, "liveness_record", None)
            liveness = liveness_record() if callable(liveness_record) else None
            if liveness is not None and summary is not None:
                liveness["challenge"] = _challenge_part(summary)
            if self.hq_box_key is not None and crop is not None and embedding is not None:
                evidence = seal_evidence(
                    Evidence(crop_jpeg(crop), np.asarray(embedding, dtype="<f4").tobytes()),
                    self.hq_box_key,
                )
        v = Verification(
            kpm_id=req.kpm_id,
            programme=programme,
            period=period,
            officer_id=req.officer_id,
            decision=decision,
            score=None if score is None else float(score),
            threshold=None if threshold is None else float(threshold),
            model=self.decider.embedder_sha256,
            captured_at=captured_at,
            clock=clock,
            geo=geo,
            geofence=geofence,
            frames_used=frames_used,
            reason=reason,
            evidence=evidence,
            liveness=liveness,
            camera=self.camera if captured else None,
        )
        final = [v]

        def build(seq: int, prev: str) -> dict[str, Any]:
            # inside the write transaction: no other process can serve this KPM meanwhile
            final[0] = self._settle(v, override, req.officer_id, entry)
            return build_record(
                final[0], device_id=self.device_id, seq=seq, prev_hash=prev, key=self.key
            )

        record = self.store.append(build, self.limits, head_key=self.key, override=override)
        if final[0] is not v:  # lost the race to another writer: recorded already_served
            v = final[0]
            decision, reason = v.decision, v.reason
            score, frames_used, liveness = None, 0, None
            elig = replace(elig, decision=decision, code=ALREADY_SERVED, earlier=self._earlier)
        log.info(
            "verification seq=%d decision=%s frames=%d/%d geofence=%s",
            record["seq"],
            decision,
            frames_used,
            frames_total,
            geofence,
        )
        return {
            "record_id": record["id"],
            "seq": record["seq"],
            "kpm_id": req.kpm_id,
            "programme": programme,
            "period": period,
            "decision": decision,
            "reason": reason,
            "reason_code": elig.code if decision == elig.decision else None,
            "earlier": dict(elig.earlier) if elig.earlier is not None else None,
            "score": record["score"],
            "threshold": record["threshold"],
            "frames_used": frames_used,
            "frames_total": frames_total,
            "geofence": geofence,
            "clock": clock,
            "captured_at": record["captured_at"],
            "liveness": _liveness_answer(liveness),
        }

    def _run_challenge(self, officer_id: str, entry: RosterEntry | None) -> dict[str, Any] | None:
        """The active challenge, if configured; the screen follows it through progress().

        Past the attempt limit nobody is asked to turn their head: refused before it starts.
        """
        if self.challenge is None:
            return None
        assert entry is not None
        self._check_attempts(officer_id, entry)
        try:
            return self.challenge(self._on_step)
        finally:
            self._on_step(None, 0, 0.0)

    def _check_attempts(self, officer_id: str, entry: RosterEntry) -> None:
        """Refuse a face check past ui.max_attempts (counted in the store, per officer)."""
        if self.max_attempts is None:
            return
        used = self.store.attempts_used(officer_id, entry.kpm_id, entry.programme, entry.period)
        if used >= self.max_attempts:
            raise AttemptsUsed(self.max_attempts, entry.kpm_id, entry.programme, entry.period)

    def _settle(
        self, v: Verification, override: bool, officer_id: str, entry: RosterEntry | None
    ) -> Verification:
        """The decision as the store stands inside the write transaction.

        A handover (match or manual) whose KPM, programme and period another writer served
        since the eligibility check becomes `already_served` naming that handover; a face
        check past the attempt limit (another screen or process used the last one) is
        refused. The served ledger's UNIQUE index backs the first rule up.
        """
        self._earlier = None
        if entry is not None and v.decision in FACE_DECISIONS:
            self._check_attempts(officer_id, entry)
        if v.decision not in ("match", "manual") or override:
            return v
        earlier = self.store.served_by(v.kpm_id, v.programme, v.period)
        if earlier is None:
            return v
        self._earlier = earlier
        return replace(
            v,
            decision="already_served",
            reason=f"{ALREADY_SERVED}: {v.programme} {v.period} handed over "
            f"{describe_earlier(earlier)} (while this verification ran)",
            score=None,
            threshold=None,
            frames_used=0,
            evidence=None,
            liveness=None,
        )

    def _override(self, entry: RosterEntry, earlier: Mapping[str, Any], manual_reason: str) -> str:
        """A manual handover over an earlier one: only after the refusal was recorded.

        The officer first gets (and the store records) `already_served`; asking again
        with a reason gives a `manual` record naming the earlier record, which HQ's
        double-collection report lists for review.
        """
        if not self.store.refused_since(
            entry.kpm_id, entry.programme, entry.period, int(earlier["seq"])
        ):
            raise BadRequest(
                "manual_reason: overriding already_served needs the refusal recorded first "
                "(verify once without manual_reason)"
            )
        return (
            f"override of already_served (record {earlier['record_id']}): {manual_reason.strip()}"
        )

    def _last_failure(
        self,
        kpm_id: str,
        programme: str,
        period: str,
        decisions: Sequence[str] = FAILED_DECISIONS,
    ) -> str | None:
        """The id of the latest record with one of `decisions` for this KPM and period."""
        return self.store.last_decision(kpm_id, programme, period, tuple(decisions))


def _challenge_part(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("kind", "steps", "passed", "reason")}


def _liveness_answer(liveness: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the API tells the screen about PAD: score, threshold, frame counts (no hashes)."""
    if liveness is None:
        return None
    out = {k: liveness[k] for k in ("score", "threshold", "frames_live", "frames_judged")}
    ch = liveness.get("challenge")
    out["challenge"] = None if ch is None else {"passed": ch["passed"], "steps": ch["steps"]}
    return out


__all__ = [
    "FAILED_DECISIONS",
    "AttemptsUsed",
    "BadRequest",
    "OutboxFull",
    "Request",
    "Verifier",
    "parse_request",
]
