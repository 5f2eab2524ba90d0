"""One verification, start to finish: eligibility, burst, decision, geotag, signed record.

The parts arrive as small callables and protocols (camera burst, face decider,
where/when), so this module imports none of capture, infer or uplink; the daemon
and `edge verify` wire real ones, tests may wire others. This module does the I/O in
named steps (eligibility, decide, face check, commit); what a decision means for the
record and the answer is edge/verdict.py's (pure).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from nacl.public import PublicKey
from nacl.signing import SigningKey

from bansos_contract.ids import TEXT_ID as _ID
from edge import verdict
from edge.eligibility import Eligibility, check_eligibility
from edge.handover import AttemptsUsed, BadRequest, HandoverRules
from edge.period import period_problem
from edge.records import (
    FAILED_DECISIONS,
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
        self.max_attempts = max_attempts  # face checks per officer, KPM and period
        self.rules = HandoverRules(store, max_attempts)
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
        elig, current = self._eligibility(req, captured_at)
        entry = elig.entry
        target = verdict.record_target(entry, req.programme, req.period, current)
        geo, geofence = self.where(entry.place if entry else None)
        o = self._decide(req, elig, clock)
        v = verdict.verification(
            req.kpm_id,
            req.officer_id,
            target,
            o,
            model=self.decider.embedder_sha256,
            captured_at=captured_at,
            clock=clock,
            geo=geo,
            geofence=geofence,
            camera=self.camera,
        )
        record, final, earlier = self._commit(v, o.override, req.officer_id, entry)
        if final is not v:  # lost the race to another writer: recorded already_served
            o, elig = verdict.lost_race(o, final, elig, earlier)
        log.info(
            "verification seq=%d decision=%s frames=%d/%d geofence=%s",
            record["seq"],
            o.decision,
            o.frames_used,
            o.frames_total,
            geofence,
        )
        return verdict.answer(req.kpm_id, target, o, elig, record, geofence, clock)

    def _eligibility(self, req: Request, captured_at: float) -> tuple[Eligibility, dict[str, str]]:
        """The roster and served-ledger reads, and the eligibility rules over them."""
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
        return elig, current

    def _decide(self, req: Request, elig: Eligibility, clock: str) -> verdict.Outcome:
        """Override, refusal, manual handover, failed challenge, or the face check."""
        entry = elig.entry
        if elig.decision == "already_served" and req.manual_reason is not None:
            assert entry is not None and elig.earlier is not None
            reason = self.rules.override_reason(entry, elig.earlier, req.manual_reason)
            return verdict.Outcome("manual", reason, override=True)
        if elig.decision is not None:
            return verdict.refusal(elig, clock)
        if req.manual_reason is not None:
            assert entry is not None
            if self.rules.last_failure(entry.kpm_id, entry.programme, entry.period) is None:
                raise BadRequest("manual_reason: a manual handover needs a failed face check first")
            spoof = self.rules.last_failure(entry.kpm_id, entry.programme, entry.period, ("spoof",))
            return verdict.manual(req.manual_reason, spoof)
        summary = self._run_challenge(req.officer_id, entry)
        if summary is not None and not summary["passed"]:
            return verdict.challenge_failed(summary)
        assert entry is not None
        return self._face_check(req.officer_id, entry, summary)

    def _face_check(
        self, officer_id: str, entry: RosterEntry, summary: Mapping[str, Any] | None
    ) -> verdict.Outcome:
        """The burst and the face decision; the sealed evidence when HQ's box key is set."""
        self.rules.check_attempts(officer_id, entry)
        frames = self.burst(self.burst_frames)
        result = self.decider.verify_burst(frames, entry.template_arrays())
        o = verdict.face_result(result, summary, len(frames))
        crop = getattr(result, "crop", None)
        embedding = getattr(result, "embedding", None)
        if self.hq_box_key is not None and crop is not None and embedding is not None:
            o.evidence = seal_evidence(
                Evidence(crop_jpeg(crop), np.asarray(embedding, dtype="<f4").tobytes()),
                self.hq_box_key,
            )
        return o

    def _commit(
        self, v: Verification, override: bool, officer_id: str, entry: RosterEntry | None
    ) -> tuple[dict[str, Any], Verification, Mapping[str, Any] | None]:
        """Append the signed record; returns it, the Verification settled in the write and
        the handover a racing writer made (None when we did not lose a race)."""
        final: list[tuple[Verification, Mapping[str, Any] | None]] = [(v, None)]

        def build(seq: int, prev: str) -> dict[str, Any]:
            # inside the write transaction: no other process can serve this KPM meanwhile
            final[0] = self.rules.settle(v, override, officer_id, entry)
            return build_record(
                final[0][0], device_id=self.device_id, seq=seq, prev_hash=prev, key=self.key
            )

        record = self.store.append(build, self.limits, head_key=self.key, override=override)
        return record, final[0][0], final[0][1]

    def _run_challenge(self, officer_id: str, entry: RosterEntry | None) -> dict[str, Any] | None:
        """The active challenge, if configured; the screen follows it through progress().

        Past the attempt limit nobody is asked to turn their head: refused before it starts.
        """
        if self.challenge is None:
            return None
        assert entry is not None
        self.rules.check_attempts(officer_id, entry)
        try:
            return self.challenge(self._on_step)
        finally:
            self._on_step(None, 0, 0.0)


__all__ = [
    "FAILED_DECISIONS",
    "AttemptsUsed",
    "BadRequest",
    "OutboxFull",
    "Request",
    "Verifier",
    "parse_request",
]
