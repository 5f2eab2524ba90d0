"""The uplink's figures and its retained status document: what to say, and when it is due.

It reads the outbox, the counters, the roster handler and the daemon's extra info; it does
not publish (the session does, when next_status() returns a payload).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import edge.uplink.status as status_doc
from edge.uplink.counters import Counters
from edge.uplink.outbox import Outbox

log = logging.getLogger(__name__)

STATUS_MIN_GAP_S = 1.0
NO_ROSTER = {"bundle_id": None, "last_refused": None}


class RosterHandler(Protocol):
    """What the session hands roster payloads to (the daemon's edge.roster_inbox.RosterInbox)."""

    def receive(self, payload: bytes, source: str) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def counts(self) -> dict[str, int]: ...


class StatusReporter:
    """stats() for the daemon and API; the status document at most once a STATUS_MIN_GAP_S,
    at once on a change that matters (status.change_key), else every `interval_s`."""

    def __init__(
        self,
        device_id: str,
        outbox: Outbox,
        counters: Counters,
        roster: RosterHandler | None,
        extra: Callable[[], dict[str, Any]],
        interval_s: float,
    ) -> None:
        self.device_id = device_id
        self.outbox = outbox
        self.counters = counters
        self.roster = roster
        self.extra = extra
        self.interval_s = interval_s
        self._last = 0.0
        self._last_key: tuple[Any, ...] | None = None
        self._pending_key: tuple[Any, ...] | None = None

    def stats(self, connected: bool, in_flight: int) -> dict[str, Any]:
        """Outbox figures plus link state and counters (safe from any thread)."""
        counters = self.counters.snapshot()
        counters.update(self._roster_counts())
        return {
            **self.outbox.stats().as_dict(),
            "connected": connected,
            "in_flight": in_flight,
            "roster": self._roster_status(),
            "counters": counters,
        }

    def reset(self) -> None:
        """A new connection: the next next_status() publishes "online" at once."""
        self._last_key = None

    def next_status(self, now_m: float) -> bytes | None:
        """The payload to publish now, or None when nothing is due; call sent() after."""
        if now_m - self._last < STATUS_MIN_GAP_S:
            return None
        doc = self.document()
        key = status_doc.change_key(doc)
        if key == self._last_key and now_m - self._last < self.interval_s:
            return None
        self._pending_key = key
        return status_doc.encode(doc)

    def sent(self, now_m: float) -> None:
        self._last = now_m
        self._last_key = self._pending_key

    def document(self) -> dict[str, Any]:
        try:
            extra = dict(self.extra())
        except Exception as exc:  # the daemon's info must not stop uploads
            log.warning("status info unavailable: %s", exc)
            extra = {}
        return status_doc.online_status(
            self.device_id,
            self.outbox.stats(),
            self._roster_status(),
            extra,
            time.time(),
            self.counters["rejected"],
        )

    def offline(self) -> bytes:
        return status_doc.encode(status_doc.offline_status(self.device_id))

    def _roster_status(self) -> dict[str, Any]:
        return self.roster.status() if self.roster is not None else dict(NO_ROSTER)

    def _roster_counts(self) -> dict[str, int]:
        if self.roster is None:
            return {"roster_imported": 0, "roster_refused": 0}
        return self.roster.counts()
