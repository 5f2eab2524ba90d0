"""What comes back from the broker and HQ: PUBACKs for records, HQ's signed acks, rosters.

PUBACKs and acks go to the outbox pump's bookkeeping; a roster payload goes to the
daemon's handler. A bad ack is counted and logged, never raised.
"""

from __future__ import annotations

import logging

from nacl.signing import VerifyKey

from bansos_contract.acks import AckRefused, parse_acks
from bansos_contract.topics import Topics
from edge.uplink.client import Message, PubAck
from edge.uplink.counters import Counters
from edge.uplink.pump import OutboxPump
from edge.uplink.reporter import RosterHandler
from edge.uplink.window import InFlight

log = logging.getLogger(__name__)


class Inbound:
    """Routes PUBACKs and messages; `subscriptions()` are the topics it wants."""

    def __init__(
        self,
        topics: Topics,
        device_id: str,
        hq_key: VerifyKey | None,
        pump: OutboxPump,
        inflight: InFlight,
        counters: Counters,
        roster: RosterHandler | None,
    ) -> None:
        self.topics = topics
        self.device_id = device_id
        self.hq_key = hq_key
        self.pump = pump
        self.inflight = inflight
        self.counters = counters
        self.roster = roster

    def subscriptions(self) -> list[str]:
        """Acks always; the roster topic only with a handler (nothing to import into)."""
        return [self.topics.acks] + ([self.topics.roster] if self.roster is not None else [])

    def handle(self, ev: PubAck | Message) -> None:
        if isinstance(ev, PubAck):
            self.puback(ev)
        else:
            self.message(ev)

    def puback(self, ev: PubAck) -> None:
        rid = self.inflight.pop(ev.mid)
        if rid is None:
            return  # a status publish
        if ev.ok:
            self.pump.pubacked(rid)
            return
        n = self.counters.add("rejected")
        self.pump.refused(rid)
        if n % 100 == 1:  # one line per hundred, not a flood
            log.error(
                "broker refused record %s: %s (%d); %d refused so far (topic ACL or certificate"
                " CN does not match device id %s?)",
                rid,
                ev.reason,
                ev.reason_code,
                n,
                self.device_id,
            )

    def message(self, ev: Message) -> None:
        if ev.topic == self.topics.acks:
            try:
                ids = parse_acks(ev.payload, self.device_id, self.hq_key)
            except AckRefused as exc:
                self.counters.add("ack_refused")
                log.warning("ignored an ack on %s: %s", ev.topic, exc)
                return
            self.pump.acked(ids)
        elif ev.topic == self.topics.roster and self.roster is not None:
            self.roster.receive(ev.payload, ev.topic)
        else:
            log.debug("ignored a message on %s", ev.topic)
