"""The `Uplink` MQTT session: the connection's lifecycle, and the in-flight window it fills.

Its helpers each have one job: connection.py (the link: dial, CONNACK, drop, close),
reconnect.py (when to dial), inbound.py (PUBACKs, HQ acks,
rosters), outbound.py (records into the window, the status when due), reporter.py (stats
and the status document), counters.py; what goes out next and
the sent/acked bookkeeping are the outbox pump's (pump.py). Roster payloads go to the
daemon's handler (edge/roster_inbox.py); purging acked records is the daemon's housekeeping.

One thread does everything (paho's network loop included), so there are no callback races:
a PUBACK for mid N is only ever looked up after the publish that made N was recorded.
It never raises out of its loop: a malformed payload is logged and counted, a broken
connection is dropped and retried with exponential backoff and full jitter.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from nacl.signing import VerifyKey

from bansos_contract.topics import Topics
from edge.config import MqttConfig, OutboxConfig
from edge.store import Store
from edge.uplink.client import ConnAck, Link, Lost, Message, PubAck
from edge.uplink.connection import Connection
from edge.uplink.counters import Counters
from edge.uplink.inbound import Inbound
from edge.uplink.outbound import Outbound
from edge.uplink.outbox import Outbox
from edge.uplink.pump import OutboxPump
from edge.uplink.reconnect import Reconnect
from edge.uplink.reporter import RosterHandler, StatusReporter
from edge.uplink.window import INFLIGHT_BYTES, InFlight

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.25  # how often an idle link looks for new records (wake() skips the wait)

__all__ = ["RosterHandler", "Uplink"]


class Uplink:
    """Records up, acks down, status with a last will; start()/stop() from the daemon.

    Without a `roster` handler the roster topic is not subscribed (nothing to import into).
    """

    def __init__(
        self,
        store: Store,
        mqtt_cfg: MqttConfig,
        outbox_cfg: OutboxConfig,
        device_id: str,
        hq_verify_key: VerifyKey | None,
        expected_model: str,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        *,
        beat: Callable[[], None] | None = None,
        rng: random.Random | None = None,
        roster: RosterHandler | None = None,
    ) -> None:
        del expected_model  # the roster handler (edge/roster_inbox.py) checks it now
        self.device_id = device_id
        self.beat = beat
        self.topics = Topics.for_device(mqtt_cfg.topic_prefix, device_id)
        self.outbox = Outbox(store, outbox_cfg.max_rows, outbox_cfg.max_bytes)
        self.counters = Counters()
        self.inflight = InFlight(mqtt_cfg.inflight, INFLIGHT_BYTES)
        self.pump = OutboxPump(
            self.outbox, outbox_cfg.resend_after_s, time.time(), self.counters.add
        )
        self.reconnect = Reconnect(
            mqtt_cfg.reconnect_min_s, mqtt_cfg.reconnect_max_s, rng or random.Random()
        )
        self.inbound = Inbound(
            self.topics, device_id, hq_verify_key, self.pump, self.inflight, self.counters, roster
        )
        self.reporter = StatusReporter(
            device_id,
            self.outbox,
            self.counters,
            roster,
            status_extra or dict,
            mqtt_cfg.status_interval_s,
        )
        self.outbound = Outbound(
            self.topics, self.pump, self.inflight, self.counters, self.reporter
        )
        self.conn = Connection(
            mqtt_cfg,
            device_id,
            self.topics,
            (self.inflight, self.pump, self.counters, self.reporter, self.inbound),
            self.reconnect,
        )
        # A link with publishes in flight and no PUBACK for this long is dead (see README).
        self.stall_s = float(mqtt_cfg.keepalive_s)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._offline_requested = threading.Event()
        self._offline_done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def _link(self) -> Link | None:
        """The live link, if any (bench/uplink.py reads its socket's byte count)."""
        return self.conn.link

    # -- public API --------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Publish the offline status (if connected), disconnect and join; True if it ended."""
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def publish_offline(self, timeout: float = 5.0) -> bool:
        """Publish the offline status, disconnect and end the thread (for SIGTERM); True if done.

        A clean DISCONNECT suppresses the will, so the offline status is published by hand.
        When not connected there is nothing to publish (the broker already has the will's
        offline status, or never saw us): the thread just ends.
        """
        if self._thread is None or not self._thread.is_alive():
            return False
        self._offline_requested.set()
        self._wake.set()
        return self._offline_done.wait(timeout)

    @property
    def window(self) -> int:
        """The in-flight window in messages (the broker's Receive Maximum may lower it)."""
        return self.inflight.size

    def wake(self) -> None:
        """A record was appended: look at the outbox now instead of at the next poll."""
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self.conn.online

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        """Outbox figures plus link state and counters (safe from any thread)."""
        return self.reporter.stats(self.conn.online, len(self.inflight))

    # -- the loop -------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                # Never let one bad turn kill the uplink: drop the link and start over.
                self.counters.add("loop_errors")
                log.exception("uplink loop error; reconnecting")
                had_link = self.conn.link is not None
                self.conn.drop("loop error")
                if not had_link:
                    self.reconnect.schedule(time.monotonic())
        self._shutdown()

    def _step(self) -> None:
        if self.beat is not None:
            self.beat()
        conn, link = self.conn, self.conn.link
        if self._offline_requested.is_set() and (link is None or not conn.online):
            self._offline_done.set()  # not connected: the will (or nothing) stands
            self._stop.set()
            return
        if link is None:
            conn.dial_when_due(self._wake)
            return
        busy = bool(len(self.inflight)) or link.want_write()
        for ev in link.loop(0.02 if busy else IDLE_POLL_S / 5):
            self._handle(ev)
        self.pump.flush(force=False)
        if link.closed:
            conn.drop("link closed")
            return
        if not conn.online:
            if self.reconnect.connack_overdue(time.monotonic()):
                conn.drop("no CONNACK in time")
            return
        if self.inflight.stalled(time.monotonic(), self.stall_s):
            conn.drop(f"no PUBACK for {self.stall_s:g} s with records in flight")
            return
        if self._offline_requested.is_set() and not self._offline_done.is_set():
            conn.close()  # online: publishes the offline status
            self._offline_done.set()
            self._stop.set()
            return
        # status first: after a reconnect "online" must not queue behind records
        self.outbound.status(link)
        self.outbound.fill(link)
        if not busy and not self.pump.more:
            if self._wake.wait(IDLE_POLL_S):
                self.pump.more = True
            self._wake.clear()

    def _handle(self, ev: ConnAck | PubAck | Message | Lost) -> None:
        if isinstance(ev, ConnAck):
            self.conn.on_connack(ev)
        elif isinstance(ev, Lost):
            log.info("MQTT disconnected: %s", ev.reason)
        else:
            self.inbound.handle(ev)

    def _shutdown(self) -> None:
        try:
            self.pump.flush()
        except Exception as exc:
            log.warning("uplink: final flush failed: %s", exc)
        self.conn.close()
        self._offline_done.set()
