"""SQL over the store's outbox table: what to send next, PUBACK and ack bookkeeping, stats.

The outbox is the truth: paho's queue is memory only, so every decision that must survive a
crash (sent, acked, last sync) is a committed row here. State only moves forward
(pending -> sent -> acked); a late PUBACK never undoes an ack.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from edge.store import Store
from edge.uplink.policy import capacity

LAST_SYNC_KEY = "uplink_last_sync"


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


class Outbox:
    """The outbox rows of one store."""

    def __init__(self, store: Store, max_rows: int, max_bytes: int) -> None:
        self.store = store
        self.max_rows = max_rows
        self.max_bytes = max_bytes

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
        # Ids first, from the (state, seq) index alone; bodies only for the chosen few.
        # Two queries rather than one OR, which would scan every row.
        with self.store.lock:
            pending = self.store.conn.execute(
                "SELECT record_id, seq FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?",
                (want,),
            ).fetchall()
            resend = self.store.conn.execute(
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
                self.store.conn.execute(
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
        with self.store.transaction():
            cur = self.store.conn.executemany(
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
        with self.store.transaction():
            cur = self.store.conn.executemany(
                "UPDATE outbox SET state = 'acked', acked_at = ? "
                " WHERE record_id = ? AND state != 'acked'",
                [(at, rid) for rid in ids],
            )
            n = int(cur.rowcount)
            self.store.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (LAST_SYNC_KEY, repr(at))
            )
            return n

    def stats(self, now: float | None = None) -> OutboxStats:
        """Queue depth, bytes, oldest unacked age, last sync and whether new records are refused."""
        at = time.time() if now is None else now
        with self.store.lock:
            counts = dict.fromkeys(("pending", "sent", "acked"), 0)
            # COUNT per state reads only the (state, seq) index; bytes and age only unacked rows.
            for state, n in self.store.conn.execute(
                "SELECT state, COUNT(*) FROM outbox GROUP BY state"
            ):
                counts[str(state)] = int(n)
            depth_bytes, oldest = self.store.conn.execute(
                "SELECT COALESCE(SUM(bytes), 0), MIN(created_at) FROM outbox"
                " WHERE state IN ('pending', 'sent')"
            ).fetchone()
            depth_bytes = int(depth_bytes)
            (oldest_sent,) = self.store.conn.execute(
                "SELECT MIN(sent_at) FROM outbox WHERE state = 'sent'"
            ).fetchone()
            last = self.store.get_meta(LAST_SYNC_KEY)
        depth = counts["pending"] + counts["sent"]
        cap = capacity(depth, depth_bytes, self.max_rows, self.max_bytes)
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

    def purge(self, retention_days: float, now: float | None = None) -> int:
        """Delete records HQ acked more than `retention_days` ago (chain stays anchored)."""
        at = time.time() if now is None else now
        return self.store.purge_acked(at - retention_days * 86400.0)
