"""One verification, start to finish: eligibility, burst, decision, geotag, signed record.

The parts arrive as small callables and protocols (camera burst, face decider,
where/when), so this module imports none of capture, infer or uplink; the daemon
and `edge verify` wire real ones, tests may wire others.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from nacl.public import PublicKey
from nacl.signing import SigningKey

from edge.eligibility import check_eligibility
from edge.records import (
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

_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,64}\Z")
FACE_DECISIONS = ("match", "no_match", "spoof", "no_face", "poor_quality")
# each counts towards the retry limit and opens the way to a manual handover
FAILED_DECISIONS = ("no_match", "spoof", "no_face", "poor_quality")


class BadRequest(ValueError):
    """The request itself is wrong (HTTP 400, exit 2)."""


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
    if period is not None and (not isinstance(period, str) or not _ID.match(period)):
        raise BadRequest(f"period: expected an id, got {period!r}")
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
        self.lock = threading.Lock()

    def verify(self, req: Request) -> dict[str, Any]:
        """Decide and commit; returns the answer. Raises OutboxFull when nothing may be stored."""
        with self.lock:
            return self._verify(req)

    def _verify(self, req: Request) -> dict[str, Any]:
        captured_at, clock = self.when()
        entries = self.store.roster_entries(req.kpm_id)
        elig = check_eligibility(
            entries,
            lambda e: self.store.served_by(e.kpm_id, e.programme, e.period),
            req.programme,
            req.period,
            now=captured_at,
            current=self.store.current_periods(captured_at),
        )
        entry = elig.entry
        programme = entry.programme if entry else (req.programme or "sembako")
        period = entry.period if entry else (req.period or "unknown")
        place = entry.place if entry else None
        geo, geofence = self.where(place)
        score: float | None = None
        threshold: float | None = None
        frames_used = 0
        frames_total = 0
        evidence = None
        liveness: dict[str, Any] | None = None
        reason: str | None
        if elig.decision == "already_served" and req.manual_reason is not None:
            assert entry is not None and elig.earlier is not None
            decision, reason = "manual", self._override(entry, elig.earlier, req.manual_reason)
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
        else:
            assert entry is not None
            frames = self.burst(self.burst_frames)
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
        )
        record = self.store.append(
            lambda seq, prev: build_record(
                v, device_id=self.device_id, seq=seq, prev_hash=prev, key=self.key
            ),
            self.limits,
        )
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

    def _override(self, entry: RosterEntry, earlier: Mapping[str, Any], manual_reason: str) -> str:
        """A manual handover over an earlier one: only after the refusal was recorded.

        The officer first gets (and the store records) `already_served`; asking again
        with a reason gives a `manual` record naming the earlier record, which HQ's
        double-collection report lists for review.
        """
        row = self.store.conn.execute(
            "SELECT 1 FROM records WHERE kpm_id = ? AND programme = ? AND period = ?"
            " AND decision = 'already_served' AND seq > ? LIMIT 1",
            (entry.kpm_id, entry.programme, entry.period, int(earlier["seq"])),
        ).fetchone()
        if row is None:
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
        marks = ", ".join("?" * len(decisions))
        row = self.store.conn.execute(
            "SELECT id FROM records WHERE kpm_id = ? AND programme = ? AND period = ?"
            f" AND decision IN ({marks}) ORDER BY seq DESC LIMIT 1",
            (kpm_id, programme, period, *decisions),
        ).fetchone()
        return None if row is None else str(row[0])


def _liveness_answer(liveness: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the API tells the screen about PAD: score, threshold, frame counts (no hashes)."""
    if liveness is None:
        return None
    return {k: liveness[k] for k in ("score", "threshold", "frames_live", "frames_judged")}


__all__ = ["BadRequest", "OutboxFull", "Request", "Verifier", "parse_request"]
