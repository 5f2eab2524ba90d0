"""HQ's writes: a batch of checked records and quarantined messages in one transaction.

Dedup is by record id (INSERT ... ON CONFLICT DO NOTHING, then compare hashes), so two
workers that receive the same record store it once. Rows are written in id order, which
keeps concurrent PostgreSQL batches from deadlocking on each other's keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

from edge.records import canonical_json
from edge_hq.checks import ID_CONFLICT, Accepted, Link, Rejected, dedup, link_issues
from edge_hq.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """One MQTT message after the pure checks; `token` lets the caller PUBACK it later."""

    topic: str
    device_id: str
    payload: bytes
    verdict: Accepted | Rejected
    token: object = None


@dataclass
class BatchResult:
    stored: list[tuple[str, str]] = field(default_factory=list)  # (device_id, id)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (device_id, reason)
    forks: int = 0

    @property
    def ackable(self) -> list[tuple[str, str]]:
        """Records HQ now holds: new ones and duplicates of stored ones."""
        return self.stored + self.duplicates


QUARANTINE_PREFIX = 4096  # bytes of a rejected payload kept (with its size and sha256)


def _quarantine(db: Database, msg: Incoming, reason: str, detail: str, now: float) -> None:
    digest = hashlib.sha256(msg.topic.encode() + b"\0" + msg.payload).hexdigest()
    db.execute(
        """INSERT INTO quarantine (payload_hash, topic, device_id, reason, detail, payload,
                                   payload_size, payload_sha256, first_at, last_at, seen)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
           ON CONFLICT (payload_hash) DO UPDATE
           SET seen = quarantine.seen + 1, last_at = excluded.last_at""",
        (
            digest, msg.topic[:512], msg.device_id[:128], reason, detail[:1000],
            msg.payload[:QUARANTINE_PREFIX], len(msg.payload),
            hashlib.sha256(msg.payload).hexdigest(), now, now,
        ),
    )  # fmt: skip


def _device_links(db: Database, device_id: str, lo: int, hi: int) -> list[Link]:
    rows = db.rows(
        "SELECT seq, id, prev_hash, hash FROM records WHERE device_id = ? AND seq BETWEEN ? AND ?",
        (device_id, lo, hi),
    )
    return [Link(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


_COLUMNS = (
    "id, device_id, seq, prev_hash, hash, kpm_id, programme, period, decision, score, "
    "geofence, captured_at, received_at, body"
)
_CHUNK = 500  # rows per INSERT: 7,000 parameters, under SQLite's and PostgreSQL's limits


def _row(acc: Accepted, now: float) -> tuple[object, ...]:
    r = acc.record
    return (
        r["id"], r["device_id"], r["seq"], r["prev_hash"], acc.hash, r["kpm_id"],
        r["programme"], r["period"], r["decision"], r["score"], r["geofence"],
        r["captured_at"], now, canonical_json(r).decode("utf-8"),
    )  # fmt: skip


def _insert_many(db: Database, accepted: list[Accepted], now: float) -> set[str]:
    """Insert in id order with one statement per chunk; returns the ids that were new.

    ON CONFLICT DO NOTHING ... RETURNING (SQLite >= 3.35, PostgreSQL) answers "was it new"
    for a whole chunk in one round trip, and stays right when two workers race on an id.
    """
    inserted: set[str] = set()
    for i in range(0, len(accepted), _CHUNK):
        chunk = accepted[i : i + _CHUNK]
        marks = ", ".join(["(" + ", ".join(["?"] * 14) + ")"] * len(chunk))
        params = [x for acc in chunk for x in _row(acc, now)]
        rows = db.rows(
            f"INSERT INTO records ({_COLUMNS}) VALUES {marks} "
            "ON CONFLICT (id) DO NOTHING RETURNING id",
            params,
        )
        inserted.update(str(r[0]) for r in rows)
    return inserted


def _stored_hashes(db: Database, ids: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        out.update(
            (str(r[0]), str(r[1]))
            for r in db.rows(f"SELECT id, hash FROM records WHERE id IN ({marks})", chunk)
        )
    return out


def _flag_forks(
    db: Database, device_id: str, new: list[Link], now: float, out: BatchResult
) -> None:
    """Fork check of a device's newly stored links against what is stored around them.

    One range query per device per batch (not one per record): the same answer, far
    fewer round trips to PostgreSQL.
    """
    near = _device_links(db, device_id, min(x.seq for x in new) - 1, max(x.seq for x in new) + 1)
    by_seq: dict[int, list[Link]] = {}
    for x in near:
        by_seq.setdefault(x.seq, []).append(x)
    for link in new:
        issues = link_issues(
            link,
            by_seq.get(link.seq - 1, []),
            by_seq.get(link.seq, []),
            by_seq.get(link.seq + 1, []),
        )
        for issue in issues:
            out.forks += 1
            log.warning("chain fork on %s at seq %d: %s", device_id, issue.seq, issue.detail)
            db.execute(
                """INSERT INTO chain_issues (at, device_id, kind, seq, record_id, detail)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (now, device_id, issue.kind, issue.seq, link.id, issue.detail),
            )


def _order(msg: Incoming) -> str:
    v = msg.verdict
    return v.record["id"] if isinstance(v, Accepted) else "~" + msg.topic


def store_batch(db: Database, batch: list[Incoming], now: float | None = None) -> BatchResult:
    """Commit a batch; returns what was stored, duplicated and quarantined (after COMMIT)."""
    now = time.time() if now is None else now
    out = BatchResult()
    ordered = sorted(batch, key=_order)
    good = [m for m in ordered if isinstance(m.verdict, Accepted)]
    with db.tx():
        for msg in ordered:
            if isinstance(msg.verdict, Rejected):
                _quarantine(db, msg, msg.verdict.reason, msg.verdict.detail, now)
                out.quarantined.append((msg.device_id, msg.verdict.reason))
        accepted = [m.verdict for m in good if isinstance(m.verdict, Accepted)]
        inserted = _insert_many(db, accepted, now)
        seen_new: set[str] = set()
        others: list[Incoming] = []
        new: dict[str, list[Link]] = {}
        for msg in good:
            assert isinstance(msg.verdict, Accepted)
            r, h = msg.verdict.record, msg.verdict.hash
            if r["id"] in inserted and r["id"] not in seen_new:
                seen_new.add(r["id"])
                out.stored.append((msg.device_id, r["id"]))
                new.setdefault(msg.device_id, []).append(Link(r["seq"], r["id"], r["prev_hash"], h))
            else:
                others.append(msg)
        stored = _stored_hashes(
            db, sorted({m.verdict.record["id"] for m in others if isinstance(m.verdict, Accepted)})
        )
        for msg in others:
            assert isinstance(msg.verdict, Accepted)
            rid = msg.verdict.record["id"]
            if dedup(stored.get(rid), msg.verdict.hash) == "duplicate":
                out.duplicates.append((msg.device_id, rid))
            else:
                _quarantine(db, msg, ID_CONFLICT, f"id {rid}", now)
                out.quarantined.append((msg.device_id, ID_CONFLICT))
        for device_id, links in sorted(new.items()):
            _flag_forks(db, device_id, links, now, out)
    return out


def audit(
    db: Database, actor: str, action: str, record_id: str | None, detail: dict[str, object]
) -> None:
    """Commit one audit row: who looked at what (ids and counts only, never biometrics)."""
    with db.tx():
        db.execute(
            "INSERT INTO audit (at, actor, action, record_id, detail) VALUES (?, ?, ?, ?, ?)",
            (time.time(), actor, action, record_id, json.dumps(detail, sort_keys=True)),
        )
