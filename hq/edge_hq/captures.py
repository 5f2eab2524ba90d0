"""Earlier verified captures as extra reference templates for the next roster bundle.

Faces change and civil-registry photos are old: the live face a kiosk verified last
period is often a better reference than the registry photo. For each KPM this picks its
best earlier `match` records (same embedder only; never from a period under
double-collection review, nor from a handover outside the KPM's geofence), and only
those are unsealed at HQ, each look audited first (like `edge hq review`). Ranking
needs no unsealing: the match score (the fused burst against the registry reference)
is the quality proxy, since a high score means a sharp, frontal, well-lit face that is
surely the KPM's; frames_used breaks ties.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey

from edge.records import open_evidence
from edge_hq.db import Database
from edge_hq.store import audit

log = logging.getLogger(__name__)
SERVED = ("match", "manual")


@dataclass(frozen=True)
class Candidate:
    record_id: str
    kpm_id: str
    programme: str
    period: str
    score: float
    frames_used: int
    model: str


@dataclass(frozen=True)
class Capture:
    record_id: str
    embedding: np.ndarray  # L2-normalised float32


def pick_captures(
    candidates: Iterable[Candidate],
    model: str,
    per_kpm: int,
    under_review: set[tuple[str, str, str]] = frozenset(),  # type: ignore[assignment]
) -> dict[str, list[Candidate]]:
    """Pure: per KPM, the best `per_kpm` candidates made with `model`, one per period.

    One per period spreads the references over time (and over kiosks' lighting) rather
    than taking several bursts of the same day.
    """
    best: dict[tuple[str, str], Candidate] = {}
    for c in candidates:
        if c.model != model or (c.kpm_id, c.programme, c.period) in under_review:
            continue
        key = (c.kpm_id, c.period)
        have = best.get(key)
        if have is None or (c.score, c.frames_used, c.record_id) > (
            have.score,
            have.frames_used,
            have.record_id,
        ):
            best[key] = c
    out: dict[str, list[Candidate]] = {}
    for c in sorted(best.values(), key=lambda c: (-c.score, -c.frames_used, c.record_id)):
        if len(out.get(c.kpm_id, ())) < per_kpm:
            out.setdefault(c.kpm_id, []).append(c)
    return out


def candidates_for(db: Database, kpm_ids: Sequence[str]) -> list[Candidate]:
    """Every stored `match` record with evidence for these KPMs."""
    wanted = set(kpm_ids)
    out = []
    for rid, kpm, programme, period, body in db.iter_rows(
        "SELECT id, kpm_id, programme, period, body FROM records WHERE decision = 'match'"
        " ORDER BY id"
    ):
        if str(kpm) not in wanted:
            continue
        rec = json.loads(str(body))
        if not rec.get("evidence") or rec.get("score") is None:
            continue
        if rec.get("geofence") == "outside":  # handed over away from the KPM's place: suspect
            continue
        out.append(
            Candidate(
                str(rid), str(kpm), str(programme), str(period), float(rec["score"]),
                int(rec.get("frames_used") or 0), str(rec.get("model")),
            )
        )  # fmt: skip
    return out


def periods_under_review(db: Database) -> set[tuple[str, str, str]]:
    """(kpm, programme, period) served more than once: not a source of references."""
    rows = db.rows(
        "SELECT kpm_id, programme, period FROM records WHERE decision IN (?, ?)"
        " GROUP BY kpm_id, programme, period HAVING COUNT(*) > 1",
        SERVED,
    )
    return {(str(k), str(p), str(d)) for k, p, d in rows}


def unseal_captures(
    db: Database,
    box_key: PrivateKey,
    chosen: Mapping[str, Sequence[Candidate]],
    actor: str,
    bundle_id: str,
) -> dict[str, list[Capture]]:
    """Audit, then open each chosen record's evidence; unreadable ones are skipped (logged)."""
    out: dict[str, list[Capture]] = {}
    for kpm, cands in chosen.items():
        for c in cands:
            audit(db, actor, "roster-capture", c.record_id, {"bundle_id": bundle_id})
            row = db.one("SELECT body FROM records WHERE id = ?", (c.record_id,))
            if row is None:
                continue
            try:
                ev = open_evidence(json.loads(str(row[0]))["evidence"], box_key)
                emb = np.frombuffer(ev.embedding, dtype="<f4")
            except (CryptoError, ValueError, KeyError, TypeError):
                log.warning("record %s: evidence does not open; not used", c.record_id)
                continue
            norm = float(np.linalg.norm(emb)) if emb.size == 128 else 0.0
            if not np.all(np.isfinite(emb)) or norm < 1e-6:
                log.warning("record %s: evidence embedding unusable; not used", c.record_id)
                continue
            out.setdefault(kpm, []).append(Capture(c.record_id, (emb / norm).astype(np.float32)))
    return out
