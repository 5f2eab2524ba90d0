"""What the session publishes on a live link: records into the in-flight window, and the
retained status when the reporter says it is due. The link is passed in each turn."""

from __future__ import annotations

import time

from bansos_contract.topics import Topics
from edge.uplink.client import Link
from edge.uplink.counters import Counters
from edge.uplink.pump import OutboxPump
from edge.uplink.reporter import StatusReporter
from edge.uplink.window import InFlight


class Outbound:
    """Fills the window from the pump (message and byte budgets); publishes status."""

    def __init__(
        self,
        topics: Topics,
        pump: OutboxPump,
        inflight: InFlight,
        counters: Counters,
        reporter: StatusReporter,
    ) -> None:
        self.topics = topics
        self.pump = pump
        self.inflight = inflight
        self.counters = counters
        self.reporter = reporter

    def fill(self, link: Link) -> None:
        room = self.inflight.room(self.pump.avg_payload)
        for record_id, payload in self.pump.next_batch(room, self.inflight.record_ids()):
            if not self.inflight.fits(len(payload)):
                self.pump.more = True  # the byte budget is full: the rest waits for PUBACKs
                return
            mid = link.publish(self.topics.records, payload, qos=1)
            if mid is None:
                self.pump.more = True
                return
            self.inflight.add(mid, record_id, len(payload))
            self.pump.published(len(payload))
            self.counters.add("published")

    def status(self, link: Link) -> None:
        now_m = time.monotonic()
        payload = self.reporter.next_status(now_m)
        if payload is not None:
            link.publish(self.topics.status, payload, qos=1, retain=True)
            self.reporter.sent(now_m)
