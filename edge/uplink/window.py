"""The in-flight window of one MQTT connection: publishes the broker has not PUBACKed yet.

At most `size` messages (min(mqtt.inflight, the broker's Receive Maximum): paho does not
enforce the broker's limit, and exceeding it gets the connection dropped) and at most
`max_bytes` of unanswered payload after the first, so a slow link does not queue seconds
of records ahead of a PUBACK or a PINGREQ. Message ids are paho's, valid for this
connection only: a dropped link clears the window (the records are still in the outbox).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from edge.uplink.policy import stalled, window_fits, window_room

# Payload bytes unanswered on the link at most (besides mqtt.inflight messages): about twice
# a 3G link's bandwidth-delay product (1 Mbit/s x 200 ms = 25 kB), and ~4 s of queue on 2G.
INFLIGHT_BYTES = 48 * 1024


class InFlight:
    def __init__(self, size: int, max_bytes: int = INFLIGHT_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._ids: dict[int, str] = {}  # paho mid -> record id
        self._sizes: dict[int, int] = {}  # paho mid -> payload bytes on the wire
        self.bytes = 0
        self.waiting_since: float | None = None  # see policy.stalled

    def __len__(self) -> int:
        return len(self._ids)

    def record_ids(self) -> Iterable[str]:
        return self._ids.values()

    def room(self, avg_payload: int) -> int:
        """How many records to fetch: the free slots, or about what the byte budget takes."""
        room = window_room(len(self._ids), self.size)
        if self._ids:
            room = min(room, max(0, self.max_bytes - self.bytes) // avg_payload)
        return room

    def fits(self, nbytes: int) -> bool:
        return window_fits(len(self._ids), self.bytes, nbytes, self.size, self.max_bytes)

    def add(self, mid: int, record_id: str, nbytes: int) -> None:
        if not self._ids:
            self.waiting_since = time.monotonic()
        self._ids[mid] = record_id
        self._sizes[mid] = nbytes
        self.bytes += nbytes

    def pop(self, mid: int) -> str | None:
        """The record a PUBACK answers, or None (a status publish, or an earlier connection's)."""
        rid = self._ids.pop(mid, None)
        if rid is None:
            return None
        self.bytes -= self._sizes.pop(mid, 0)
        self.waiting_since = time.monotonic() if self._ids else None
        return rid

    def clear(self) -> None:
        self._ids.clear()
        self._sizes.clear()
        self.bytes = 0
        self.waiting_since = None

    def stalled(self, now_m: float, stall_s: float) -> bool:
        return stalled(now_m, self.waiting_since, stall_s)
