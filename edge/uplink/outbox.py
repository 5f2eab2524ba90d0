"""The uplink's view of the store's outbox: what to send next, PUBACK and ack bookkeeping, stats.

The SQL and the outbox bound live in the store (edge/store/outbox.py); this binds them to
one config's limits for the session and the status.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge.store import Store
from edge.store.outbox import LAST_SYNC_KEY, OutboxLimits, OutboxStats, Outgoing

__all__ = ["LAST_SYNC_KEY", "Outbox", "OutboxStats", "Outgoing"]


class Outbox:
    """The outbox rows of one store, under one config's bound."""

    def __init__(self, store: Store, max_rows: int, max_bytes: int) -> None:
        self.store = store
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.rows = store.outbox
        self.limits = OutboxLimits(max_rows, max_bytes)

    def due(
        self,
        limit: int,
        exclude: Iterable[str],
        now: float,
        resend_after_s: float,
        started_at: float,
    ) -> list[Outgoing]:
        """Up to `limit` records to publish, skipping ids in flight: pending, then resends."""
        return self.rows.due(limit, exclude, now, resend_after_s, started_at)

    def mark_sent(self, record_ids: Iterable[str], now: float | None = None) -> int:
        """The broker PUBACKed these: pending/sent -> sent (acked rows stay acked)."""
        return self.rows.mark_sent(record_ids, now)

    def mark_acked(self, record_ids: Iterable[str], now: float | None = None) -> int:
        """HQ stored these: -> acked. Unknown or already acked ids change nothing."""
        return self.rows.mark_acked(record_ids, now)

    def stats(self, now: float | None = None) -> OutboxStats:
        """Queue depth, bytes, oldest unacked age, last sync and whether new records are refused."""
        return self.rows.stats(self.limits, now)
