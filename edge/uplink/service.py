"""The `Uplink` MQTT session: connect with backoff, the in-flight window, acks in and out, status.

What goes out next and the sent/acked bookkeeping are the outbox pump's (pump.py); roster
payloads are handed to the daemon's handler (edge/roster_inbox.py); purging acked records
is the daemon's housekeeping (edge/housekeeping.py).

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
from typing import Any, Protocol

from nacl.signing import VerifyKey

import edge.uplink.status as status_doc
from bansos_contract.acks import AckRefused, parse_acks
from bansos_contract.topics import Topics
from edge.config import MqttConfig, OutboxConfig
from edge.store import Store
from edge.uplink.client import ConnAck, Link, LinkError, Lost, Message, PubAck
from edge.uplink.outbox import Outbox
from edge.uplink.policy import backoff_delay
from edge.uplink.pump import OutboxPump
from edge.uplink.window import INFLIGHT_BYTES, InFlight

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.25  # how often an idle link looks for new records (wake() skips the wait)
STATUS_MIN_GAP_S = 1.0
STABLE_LINK_S = 30.0  # a link up this long resets the reconnect backoff


class RosterHandler(Protocol):
    """What the session hands roster payloads to (the daemon's edge.roster_inbox.RosterInbox)."""

    def receive(self, payload: bytes, source: str) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def counts(self) -> dict[str, int]: ...


NO_ROSTER = {"bundle_id": None, "last_refused": None}


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
        self.store = store
        self.cfg = mqtt_cfg
        self.outbox_cfg = outbox_cfg
        self.device_id = device_id
        self.hq_key = hq_verify_key
        self.expected_model = expected_model
        self.status_extra = status_extra or dict
        self.beat = beat
        self.rng = rng or random.Random()
        self.topics = Topics.for_device(mqtt_cfg.topic_prefix, device_id)
        self.outbox = Outbox(store, outbox_cfg.max_rows, outbox_cfg.max_bytes)
        self.roster = roster
        self.started_at = time.time()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._offline_requested = threading.Event()
        self._offline_done = threading.Event()
        self._thread: threading.Thread | None = None
        self._link: Link | None = None
        self._online = False
        self.inflight = InFlight(mqtt_cfg.inflight, INFLIGHT_BYTES)
        # A link with publishes in flight and no PUBACK for this long is dead (see README).
        self.stall_s = float(mqtt_cfg.keepalive_s)
        self._last_status = 0.0
        self._last_status_key: tuple[Any, ...] | None = None
        self._attempt = 0
        self._next_connect = 0.0
        self._connect_deadline = 0.0
        self._online_since = 0.0
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "published",
                "puback",
                "rejected",
                "acked",
                "ack_refused",
                "connects",
                "connect_failures",
                "link_lost",
                "loop_errors",
            ),
            0,
        )
        self._counters_lock = threading.Lock()
        self.pump = OutboxPump(self.outbox, outbox_cfg.resend_after_s, self.started_at, self._count)

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
        return self._online

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        """Outbox figures plus link state and counters (safe from any thread)."""
        s = self.outbox.stats().as_dict()
        with self._counters_lock:
            counters = dict(self.counters)
        counters.update(self._roster_counts())
        return {
            **s,
            "connected": self._online,
            "in_flight": len(self.inflight),
            "roster": self._roster_status(),
            "counters": counters,
        }

    def _roster_status(self) -> dict[str, Any]:
        return self.roster.status() if self.roster is not None else dict(NO_ROSTER)

    def _roster_counts(self) -> dict[str, int]:
        if self.roster is None:
            return {"roster_imported": 0, "roster_refused": 0}
        return self.roster.counts()

    # -- the loop -------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        with self._counters_lock:
            self.counters[key] += n

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                # Never let one bad turn kill the uplink: drop the link and start over.
                self._count("loop_errors")
                log.exception("uplink loop error; reconnecting")
                had_link = self._link is not None
                self._drop_link("loop error")
                if not had_link:
                    self._schedule_reconnect()
        self._shutdown()

    def _step(self) -> None:
        now_m = time.monotonic()
        if self.beat is not None:
            self.beat()
        link = self._link
        if self._offline_requested.is_set() and (link is None or not self._online):
            self._offline_done.set()  # not connected: the will (or nothing) stands
            self._stop.set()
            return
        if link is None:
            if now_m < self._next_connect:
                self._wake.wait(min(1.0, self._next_connect - now_m))
                self._wake.clear()
                return
            self._connect()
            return
        busy = bool(len(self.inflight)) or link.want_write()
        for ev in link.loop(0.02 if busy else IDLE_POLL_S / 5):
            self._handle(ev)
        self.pump.flush(force=False)
        if link.closed:
            self._drop_link("link closed")
            return
        if not self._online:
            if time.monotonic() > self._connect_deadline:
                self._drop_link("no CONNACK in time")
            return
        if self.inflight.stalled(time.monotonic(), self.stall_s):
            self._drop_link(f"no PUBACK for {self.stall_s:g} s with records in flight")
            return
        if self._offline_requested.is_set() and not self._offline_done.is_set():
            link.close(
                self.topics.status, status_doc.encode(status_doc.offline_status(self.device_id))
            )
            self._offline_done.set()
            self._online = False
            self._link = None
            self._stop.set()
            return
        self._maybe_status(link)  # first: after a reconnect "online" must not queue behind records
        self._fill_window(link)
        if not busy and not self.pump.more:
            if self._wake.wait(IDLE_POLL_S):
                self.pump.more = True
            self._wake.clear()

    def _connect(self) -> None:
        will = status_doc.encode(status_doc.offline_status(self.device_id))
        try:
            link = Link(self.cfg, self.device_id, self.topics.status, will, self.inflight.size)
            link.open()
        except (LinkError, OSError, ValueError) as exc:  # ValueError/OSError: TLS files
            self._count("connect_failures")
            log.warning("MQTT connect to %s:%s failed: %s", self.cfg.host, self.cfg.port, exc)
            self._schedule_reconnect()
            return
        self._link = link
        self._connect_deadline = time.monotonic() + self.cfg.connect_timeout_s

    def _schedule_reconnect(self) -> None:
        delay = backoff_delay(
            self._attempt, self.cfg.reconnect_min_s, self.cfg.reconnect_max_s, self.rng
        )
        self._attempt += 1
        self._next_connect = time.monotonic() + delay
        log.info("MQTT reconnect in %.1f s (attempt %d)", delay, self._attempt)

    def _drop_link(self, why: str) -> None:
        link, self._link = self._link, None
        was_online = self._online
        self._online = False
        # Whatever was in flight is still pending/sent in the outbox; it goes again.
        self.inflight.clear()
        try:
            self.pump.flush()
        except Exception as exc:
            log.warning("uplink: flush failed: %s", exc)
        self.pump.more = True
        if link is not None:
            link.close()
            if was_online:
                self._count("link_lost")
                log.warning("MQTT link lost: %s", why)
                if time.monotonic() - self._online_since >= STABLE_LINK_S:
                    self._attempt = 0  # a link that held is a fresh start; a flapping one is not
            self._schedule_reconnect()

    def _handle(self, ev: ConnAck | PubAck | Message | Lost) -> None:
        if isinstance(ev, ConnAck):
            self._on_connack(ev)
        elif isinstance(ev, PubAck):
            self._on_puback(ev)
        elif isinstance(ev, Message):
            self._on_message(ev)
        else:
            log.info("MQTT disconnected: %s", ev.reason)

    def _on_connack(self, ev: ConnAck) -> None:
        if not ev.ok:
            self._count("connect_failures")
            log.warning("MQTT broker refused the connection: %s", ev.reason)
            if self._link is not None:
                self._link.closed = True
            return
        assert self._link is not None
        self.inflight.size = min(self.cfg.inflight, ev.receive_maximum)
        if self.inflight.size < self.cfg.inflight:
            log.info("in-flight window %d (the broker's receive maximum)", self.inflight.size)
        self._online = True
        self._online_since = time.monotonic()
        self.pump.more = True
        self._count("connects")
        log.info("MQTT connected (session present: %s)", ev.session_present)
        topics = [self.topics.acks] + ([self.topics.roster] if self.roster is not None else [])
        self._link.subscribe(topics)
        self._last_status_key = None  # publish "online" now

    def _on_puback(self, ev: PubAck) -> None:
        rid = self.inflight.pop(ev.mid)
        if rid is None:
            return  # a status publish
        if ev.ok:
            self.pump.pubacked(rid)
            return
        self._count("rejected")
        self.pump.refused(rid)
        with self._counters_lock:
            n = self.counters["rejected"]
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

    def _on_message(self, ev: Message) -> None:
        if ev.topic == self.topics.acks:
            try:
                ids = parse_acks(ev.payload, self.device_id, self.hq_key)
            except AckRefused as exc:
                self._count("ack_refused")
                log.warning("ignored an ack on %s: %s", ev.topic, exc)
                return
            self.pump.acked(ids)
        elif ev.topic == self.topics.roster and self.roster is not None:
            self.roster.receive(ev.payload, ev.topic)
        else:
            log.debug("ignored a message on %s", ev.topic)

    # -- records -----------------------------------------------------------------------
    def _fill_window(self, link: Link) -> None:
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
            self._count("published")

    # -- status ---------------------------------------------------
    def _status(self) -> dict[str, Any]:
        try:
            extra = dict(self.status_extra())
        except Exception as exc:  # the daemon's info must not stop uploads
            log.warning("status info unavailable: %s", exc)
            extra = {}
        with self._counters_lock:
            rejected = self.counters["rejected"]
        return status_doc.online_status(
            self.device_id, self.outbox.stats(), self._roster_status(), extra, time.time(), rejected
        )

    def _maybe_status(self, link: Link) -> None:
        now_m = time.monotonic()
        if now_m - self._last_status < STATUS_MIN_GAP_S:
            return
        doc = self._status()
        key = status_doc.change_key(doc)
        if key == self._last_status_key and now_m - self._last_status < self.cfg.status_interval_s:
            return
        link.publish(self.topics.status, status_doc.encode(doc), qos=1, retain=True)
        self._last_status = now_m
        self._last_status_key = key

    def _shutdown(self) -> None:
        link, self._link = self._link, None
        try:
            self.pump.flush()
        except Exception as exc:
            log.warning("uplink: final flush failed: %s", exc)
        if link is not None:
            offline = status_doc.encode(status_doc.offline_status(self.device_id))
            link.close(
                self.topics.status if self._online else None, offline if self._online else None
            )
        self._online = False
        self._offline_done.set()
