"""The session's one broker connection: dial when due, take the CONNACK, drop and redial.

It owns the link and whether it is online; dropping a link puts what was in flight back
(the outbox still has it as pending or sent) and schedules the next dial. The session
(service.py) drives it from its one thread.
"""

from __future__ import annotations

import logging
import threading
import time

from bansos_contract.topics import Topics
from edge.config import MqttConfig
from edge.uplink.client import ConnAck, Link, LinkError
from edge.uplink.counters import Counters
from edge.uplink.inbound import Inbound
from edge.uplink.pump import OutboxPump
from edge.uplink.reconnect import Reconnect
from edge.uplink.reporter import StatusReporter
from edge.uplink.window import InFlight

log = logging.getLogger(__name__)


class Connection:
    """`link` is None between connections; `online` is True from a good CONNACK on."""

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        topics: Topics,
        parts: tuple[InFlight, OutboxPump, Counters, StatusReporter, Inbound],
        reconnect: Reconnect,
    ) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.topics = topics
        self.inflight, self.pump, self.counters, self.reporter, self.inbound = parts
        self.reconnect = reconnect
        self.link: Link | None = None
        self.online = False

    def dial_when_due(self, wake: threading.Event) -> None:
        """Open a link if the backoff allows (else wait on `wake`, at most a second)."""
        wait_s = self.reconnect.wait_s(time.monotonic())
        if wait_s > 0:
            wake.wait(min(1.0, wait_s))
            wake.clear()
            return
        will = self.reporter.offline()
        try:
            link = Link(self.cfg, self.device_id, self.topics.status, will, self.inflight.size)
            link.open()
        except (LinkError, OSError, ValueError) as exc:  # ValueError/OSError: TLS files
            self.counters.add("connect_failures")
            log.warning("MQTT connect to %s:%s failed: %s", self.cfg.host, self.cfg.port, exc)
            self.reconnect.schedule(time.monotonic())
            return
        self.link = link
        self.reconnect.dialled(time.monotonic(), self.cfg.connect_timeout_s)

    def on_connack(self, ev: ConnAck) -> None:
        if not ev.ok:
            self.counters.add("connect_failures")
            log.warning("MQTT broker refused the connection: %s", ev.reason)
            if self.link is not None:
                self.link.closed = True
            return
        assert self.link is not None
        self.inflight.size = min(self.cfg.inflight, ev.receive_maximum)
        if self.inflight.size < self.cfg.inflight:
            log.info("in-flight window %d (the broker's receive maximum)", self.inflight.size)
        self.online = True
        self.reconnect.up(time.monotonic())
        self.pump.more = True
        self.counters.add("connects")
        log.info("MQTT connected (session present: %s)", ev.session_present)
        self.link.subscribe(self.inbound.subscriptions())
        self.reporter.reset()  # publish "online" now

    def drop(self, why: str) -> None:
        """Give up this link (if any); what was in flight goes again on the next one."""
        link, self.link = self.link, None
        was_online = self.online
        self.online = False
        self.inflight.clear()
        try:
            self.pump.flush()
        except Exception as exc:
            log.warning("uplink: flush failed: %s", exc)
        self.pump.more = True
        if link is not None:
            link.close()
            if was_online:
                self.counters.add("link_lost")
                log.warning("MQTT link lost: %s", why)
                self.reconnect.lost(time.monotonic())
            self.reconnect.schedule(time.monotonic())

    def close(self) -> None:
        """Disconnect cleanly; when online, publish the offline status first (a clean
        DISCONNECT suppresses the will)."""
        link, self.link = self.link, None
        if link is not None:
            online = self.online
            link.close(
                self.topics.status if online else None, self.reporter.offline() if online else None
            )
        self.online = False
