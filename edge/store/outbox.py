"""The outbox rows: what to send next, PUBACK and ack bookkeeping, and the outbox bound.

The outbox is the truth: paho's queue is memory only, so every decision that must survive
a crash (sent, acked, last sync) is a committed row here. State only moves forward
(pending -> sent -> acked); a late PUBACK never undoes an ack. The bound ("outbox full")
is stated once, in `capacity`: the verification flow refuses a new record by it and the
status reports it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from edge.errors import EXIT_MISSING, EdgeError
from edge.store.db import Db

LAST_SYNC_KEY = "uplink_last_sync"


class OutboxFull(EdgeError):
    """The outbox holds as many rows or bytes as the config allows; refuse new records."""

    exit_code = EXIT_MISSING


@dataclass(frozen=True)
class OutboxLimits:
    max_rows: int
    max_bytes: int


@dataclass(frozen=True)
class Capacity:
    """Whether the outbox may take another record, and why not."""

    full: bool
    rows: int
    bytes: int
    max_rows: int
    max_bytes: int

    @property
    def reason(self) -> str:
        if not self.full:
            return ""
        return (
            f"outbox full: {self.rows} records / {self.bytes} bytes waiting for HQ "
            f"(limits {self.max_rows} / {self.max_bytes}); connect to sync"
        )


def capacity(rows: int, size: int, max_rows: int, max_bytes: int) -> Capacity:
    """The outbox bound: full when the unacked rows or bytes reach a limit."""
    return Capacity(rows >= max_rows or size >= max_bytes, rows, size, max_rows, max_bytes)


@dataclass(frozen=True)
class Outgoing:
    """One record to publish: its id is the identity HQ dedups by."""

    record_id: str
    seq: int
    body: bytes


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    sent: int
    acked: int
    depth: int  # not yet acked (pending + sent)
    depth_bytes: int
    oldest_pending_age_s: float | None  # oldest not-yet-acked record
    last_sync: float | None  # when the last HQ ack was stored (Unix time)
    full: bool
    full_reason: str
    # How long the oldest PUBACKed-but-not-acked record has waited for HQ (status): a
    # record the broker accepted that never reached HQ shows here past resend_after_s.
    oldest_sent_age_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class OutboxRows:
    """The outbox table of one store."""

    def __init__(self, db: Db) -> None:
        self.db = db

    # -- inside the record's transaction -------------------------------------------
    def check_room(self, limits: OutboxLimits) -> None:
        """Raise OutboxFull when the bound is reached (call inside the append transaction)."""
        rows, size = self.db.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox WHERE state != 'acked'"
        ).fetchone()
        cap = capacity(int(rows), int(size), limits.max_rows, limits.max_bytes)
        if cap.full:
            raise OutboxFull(cap.reason)

    def add(self, record_id: str, seq: int, nbytes: int) -> None:
        self.db.conn.execute(
            "INSERT INTO outbox (record_id, seq, state, bytes, created_at)"
            " VALUES (?, ?, 'pending', ?, ?)",
            (record_id, seq, nbytes, time.time()),
        )

    # -- the uplink's bookkeeping --------------------------------------------------
    def due(
        self,
        limit: int,
        exclude: Iterable[str],
        now: float,
        resend_after_s: float,
        started_at: float,
    ) -> list[Outgoing]:
        """Up to `limit` records to publish, skipping ids in flight: pending, then resends.

        Same rule as policy.resend_due, in SQL: pending, or sent and (before this run started
        or longer ago than the resend timeout).
        """
        skip = set(exclude)
        want = limit + len(skip)
        conn = self.db.conn
        # Ids first, from the (state, seq) index alone; bodies only for the chosen few.
        # Two queries rather than one OR, which would scan every row.
        with self.db.lock:
            pending = conn.execute(
                "SELECT record_id, seq FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?",
                (want,),
            ).fetchall()
            resend = conn.execute(
                "SELECT record_id, seq FROM outbox WHERE state = 'sent'"
                " AND (sent_at IS NULL OR sent_at < ? OR sent_at <= ?) ORDER BY seq LIMIT ?",
                (started_at, now - resend_after_s, want),
            ).fetchall()
            # Pending first: a restart's stale "sent" rows go after them, which gives the acks
            # queued in the broker session time to arrive and spares most resends.
            chosen = [r for r in pending + resend if r[0] not in skip]
            chosen = chosen[:limit]
            if not chosen:
                return []
            marks = ",".join("?" * len(chosen))
            bodies = dict(
                conn.execute(
                    f"SELECT id, body FROM records WHERE id IN ({marks})",  # only ? placeholders
                    [str(r[0]) for r in chosen],
                ).fetchall()
            )
        return [
            Outgoing(str(rid), int(seq), str(bodies[rid]).encode("utf-8"))
            for rid, seq in chosen
            if rid in bodies
        ]

    def mark_sent(self, record_ids: Iterable[str], now: float | None = None) -> int:
        """The broker PUBACKed these: pending/sent -> sent (acked rows stay acked)."""
        ids = list(record_ids)
        if not ids:
            return 0
        at = time.time() if now is None else now
        with self.db.transaction():
            cur = self.db.conn.executemany(
                "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1"
                " WHERE record_id = ? AND state != 'acked'",
                [(at, rid) for rid in ids],
            )
            return int(cur.rowcount)

    def mark_acked(self, record_ids: Iterable[str], now: float | None = None) -> int:
        """HQ stored these: -> acked. Unknown or already acked ids change nothing."""
        ids = list(record_ids)
        if not ids:
            return 0
        at = time.time() if now is None else now
        with self.db.transaction():
            cur = self.db.conn.executemany(
                "UPDATE outbox SET state = 'acked', acked_at = ? "
                " WHERE record_id = ? AND state != 'acked'",
                [(at, rid) for rid in ids],
            )
            n = int(cur.rowcount)
            self.db.set_meta((LAST_SYNC_KEY, repr(at)))
            return n

    def stats(self, limits: OutboxLimits, now: float | None = None) -> OutboxStats:
        """Queue depth, bytes, oldest unacked age, last sync and whether new records are refused."""
        at = time.time() if now is None else now
        conn = self.db.conn
        with self.db.lock:
            counts = dict.fromkeys(("pending", "sent", "acked"), 0)
            # COUNT per state reads only the (state, seq) index; bytes and age only unacked rows.
            for state, n in conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"):
                counts[str(state)] = int(n)
            depth_bytes, oldest = conn.execute(
                "SELECT COALESCE(SUM(bytes), 0), MIN(created_at) FROM outbox"
                " WHERE state IN ('pending', 'sent')"
            ).fetchone()
            depth_bytes = int(depth_bytes)
            (oldest_sent,) = conn.execute(
                "SELECT MIN(sent_at) FROM outbox WHERE state = 'sent'"
            ).fetchone()
            last = self.db.get_meta(LAST_SYNC_KEY)
        depth = counts["pending"] + counts["sent"]
        cap = capacity(depth, depth_bytes, limits.max_rows, limits.max_bytes)
        return OutboxStats(
            pending=counts["pending"],
            sent=counts["sent"],
            acked=counts["acked"],
            depth=depth,
            depth_bytes=depth_bytes,
            oldest_pending_age_s=None if oldest is None else round(max(0.0, at - oldest), 3),
            last_sync=float(last) if last else None,
            full=cap.full,
            full_reason=cap.reason,
            oldest_sent_age_s=(
                None if oldest_sent is None else round(max(0.0, at - float(oldest_sent)), 3)
            ),
        )

    # -- audit ----------------------------------------------------------------------
    def counts_by_state(self) -> dict[str, int]:
        """Rows per state that has any (e.g. {"pending": 2, "acked": 40})."""
        with self.db.lock:
            rows = self.db.conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            return {str(s): int(n) for s, n in rows}

    def max_seq(self) -> int:
        """The highest seq that ever had an outbox row (0 if none)."""
        with self.db.lock:
            row = self.db.conn.execute("SELECT MAX(seq) FROM outbox").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def is_empty(self) -> bool:
        with self.db.lock:
            return self.db.conn.execute("SELECT 1 FROM outbox LIMIT 1").fetchone() is None
