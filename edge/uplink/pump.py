"""The outbox pump: which records go out next, and the PUBACK/ack bookkeeping committed in batches.

It knows the outbox and nothing of MQTT: the session (service.py) asks it for the next
payloads that fit its window and tells it what the broker and HQ answered. PUBACKs and
HQ acks are committed in batches (every FLUSH_EVERY_S or FLUSH_AT_IDS ids; each commit is
an fsync); until then PUBACKed ids stay out of the next fetch so they are not sent twice.
A crash before the commit only means a resend, which HQ dedups and re-acks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from bansos_contract.wire import encode
from edge.uplink.outbox import Outbox

FLUSH_EVERY_S = 0.25  # commit PUBACK/ack bookkeeping at most this often ...
FLUSH_AT_IDS = 1000  # ... unless this many ids are waiting
RESCAN_S = 1.0  # with nothing known to be waiting, look at the outbox this often


class OutboxPump:
    """Pending records first, then resends; a record the broker refused cools down first."""

    def __init__(
        self,
        outbox: Outbox,
        resend_after_s: float,
        started_at: float,
        count: Callable[[str, int], object],
    ) -> None:
        self.outbox = outbox
        self.resend_after_s = resend_after_s
        self.started_at = started_at  # "sent" rows from before this run are resent
        self.count = count
        self.more = True  # records may be waiting (a full fetch, a wake, a dropped link)
        self.avg_payload = 512  # running mean of payload sizes, to size a fetch
        self._pubacked: dict[str, None] = {}
        self._acked: list[str] = []
        self._cooldown: dict[str, float] = {}  # record id -> monotonic time to retry (rejected)
        self._last_flush = 0.0
        self._last_scan = 0.0

    # -- answers from the broker and HQ -------------------------------------------------
    def pubacked(self, record_id: str) -> None:
        self._pubacked[record_id] = None

    def refused(self, record_id: str) -> None:
        """The broker refused it (e.g. 135 not authorized): keep it pending, retry much later."""
        self._cooldown[record_id] = time.monotonic() + self.resend_after_s

    def acked(self, record_ids: Iterable[str]) -> None:
        self._acked.extend(record_ids)

    def flush(self, force: bool = True) -> None:
        """Commit the gathered PUBACKs and acks, each list in one transaction."""
        now_m = time.monotonic()
        size = len(self._pubacked) + len(self._acked)
        if not force and now_m - self._last_flush < FLUSH_EVERY_S and size < FLUSH_AT_IDS:
            return
        self._last_flush = now_m
        if self._pubacked:
            ids, self._pubacked = list(self._pubacked), {}
            self.outbox.mark_sent(ids)
            self.count("puback", len(ids))
        if self._acked:
            ids, self._acked = self._acked, []
            self.count("acked", self.outbox.mark_acked(ids))

    # -- what goes out next -----------------------------------------------------------------
    def next_batch(self, room: int, in_flight: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Up to `room` (record id, wire payload) pairs, skipping what is in flight or cooling.

        Returns nothing when there is no room, or when nothing is known to be waiting and the
        outbox was looked at less than RESCAN_S ago.
        """
        now_m = time.monotonic()
        if room <= 0 or not (self.more or now_m - self._last_scan >= RESCAN_S):
            return iter(())
        self._last_scan = now_m
        cooling = {rid for rid, until in self._cooldown.items() if until > now_m}
        self._cooldown = {rid: t for rid, t in self._cooldown.items() if t > now_m}
        batch = self.outbox.due(
            room,
            set(in_flight) | set(self._pubacked) | cooling,
            time.time(),
            self.resend_after_s,
            self.started_at,
        )
        self.more = len(batch) == room
        # compressed on the wire; HQ inflates to exactly the bytes the kiosk signed
        return ((item.record_id, encode(item.body)) for item in batch)

    def published(self, size: int) -> None:
        self.avg_payload = max(64, (7 * self.avg_payload + size) // 8)
