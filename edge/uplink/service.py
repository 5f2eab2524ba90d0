"""The `Uplink` thread: drains the outbox over MQTT, stores HQ's acks, imports rosters, reports.

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

from bansos_contract.acks import AckRefused, parse_acks
from bansos_contract.topics import Topics
from bansos_contract.utc import iso_ms as utc_iso
from bansos_contract.wire import encode
from edge.config import MqttConfig, OutboxConfig
from edge.store import Store
from edge.uplink import status as status_doc
from edge.uplink.client import ConnAck, Link, LinkError, Lost, Message, PubAck
from edge.uplink.downlink import current_bundle, receive_roster
from edge.uplink.outbox import Outbox
from edge.uplink.policy import backoff_delay, stalled, window_fits, window_room

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.25  # how often an idle link looks for new records (wake() skips the wait)
STATUS_MIN_GAP_S = 1.0
STABLE_LINK_S = 30.0  # a link up this long resets the reconnect backoff
FLUSH_EVERY_S = 0.25  # commit PUBACK/ack bookkeeping at most this often ...
FLUSH_AT_IDS = 1000  # ... unless this many ids are waiting
# Payload bytes unanswered on the link at most (besides mqtt.inflight messages): about twice
# a 3G link's bandwidth-delay product (1 Mbit/s x 200 ms = 25 kB), and ~4 s of queue on 2G.
INFLIGHT_BYTES = 48 * 1024


class Uplink:
    """Records up, acks and rosters down, status with a last will; start()/stop() from the daemon."""

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
        self.window = mqtt_cfg.inflight
        self.started_at = time.time()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._offline_requested = threading.Event()
        self._offline_done = threading.Event()
        self._thread: threading.Thread | None = None
        self._link: Link | None = None
        self._online = False
        # PUBACKs and HQ acks are committed in batches (each commit is an fsync); until then
        # PUBACKed ids stay out of the next due() so they are not sent twice.
        self._pubacked: dict[str, None] = {}
        self._acked: list[str] = []
        self._last_flush = 0.0
        self._inflight: dict[int, str] = {}  # paho mid (this connection only) -> record id
        self._inflight_size: dict[int, int] = {}  # paho mid -> payload bytes on the wire
        self._inflight_bytes = 0
        self._waiting_since: float | None = None  # see policy.stalled
        self._avg_payload = 512  # running mean of payload sizes, to size a fetch
        # A link with publishes in flight and no PUBACK for this long is dead (see README).
        self.stall_s = float(mqtt_cfg.keepalive_s)
        self._cooldown: dict[str, float] = {}  # record id -> monotonic time to retry (rejected)
        self._more = True
        self._last_scan = 0.0
        self._last_status = 0.0
        self._last_status_key: tuple[Any, ...] | None = None
        self._last_purge = 0.0
        self._attempt = 0
        self._next_connect = 0.0
        self._connect_deadline = 0.0
        self._online_since = 0.0
        self._roster: dict[str, Any] = {"bundle_id": current_bundle(store), "last_refused": None}
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
                "roster_imported",
                "roster_refused",
                "loop_errors",
            ),
            0,
        )
        self._counters_lock = threading.Lock()

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
        return {
            **s,
            "connected": self._online,
            "in_flight": len(self._inflight),
            "roster": dict(self._roster),
            "counters": counters,
        }

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
        self._housekeeping(now_m)
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
        busy = bool(self._inflight) or link.want_write()
        for ev in link.loop(0.02 if busy else IDLE_POLL_S / 5):
            self._handle(ev)
        self._flush(force=False)
        if link.closed:
            self._drop_link("link closed")
            return
        if not self._online:
            if time.monotonic() > self._connect_deadline:
                self._drop_link("no CONNACK in time")
            return
        if stalled(time.monotonic(), self._waiting_since, self.stall_s):
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
        if not busy and not self._more:
            if self._wake.wait(IDLE_POLL_S):
                self._more = True
            self._wake.clear()

    def _connect(self) -> None:
        will = status_doc.encode(status_doc.offline_status(self.device_id))
        try:
            link = Link(self.cfg, self.device_id, self.topics.status, will, self.window)
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
        self._inflight.clear()
        self._inflight_size.clear()
        self._inflight_bytes = 0
        self._waiting_since = None
        try:
            self._flush()
        except Exception as exc:
            log.warning("uplink: flush failed: %s", exc)
        self._more = True
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
        self.window = min(self.cfg.inflight, ev.receive_maximum)
        if self.window < self.cfg.inflight:
            log.info("in-flight window %d (the broker's receive maximum)", self.window)
        self._online = True
        self._online_since = time.monotonic()
        self._more = True
        self._count("connects")
        log.info("MQTT connected (session present: %s)", ev.session_present)
        self._link.subscribe([self.topics.acks, self.topics.roster])
        self._last_status_key = None  # publish "online" now

    def _on_puback(self, ev: PubAck) -> None:
        rid = self._inflight.pop(ev.mid, None)
        if rid is None:
            return  # a status publish
        self._inflight_bytes -= self._inflight_size.pop(ev.mid, 0)
        self._waiting_since = time.monotonic() if self._inflight else None
        if ev.ok:
            self._pubacked[rid] = None
            return
        # The broker refused it (e.g. 135 not authorized): keep it pending, retry much later.
        self._count("rejected")
        self._cooldown[rid] = time.monotonic() + self.outbox_cfg.resend_after_s
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
            self._acked.extend(ids)
        elif ev.topic == self.topics.roster:
            self._on_roster(ev.payload)
        else:
            log.debug("ignored a message on %s", ev.topic)

    # -- records -----------------------------------------------------------------------
    def _flush(self, force: bool = True) -> None:
        """Commit the gathered PUBACKs and acks, each list in one transaction.

        Batched by time and size: a crash before the commit loses nothing but the bookkeeping
        (PUBACKed records go out again at start, acked ones are acked again by HQ).
        """
        now_m = time.monotonic()
        size = len(self._pubacked) + len(self._acked)
        if not force and now_m - self._last_flush < FLUSH_EVERY_S and size < FLUSH_AT_IDS:
            return
        self._last_flush = now_m
        if self._pubacked:
            ids, self._pubacked = list(self._pubacked), {}
            self.outbox.mark_sent(ids)
            self._count("puback", len(ids))
        if self._acked:
            ids, self._acked = self._acked, []
            n = self.outbox.mark_acked(ids)
            self._count("acked", n)

    def _fill_window(self, link: Link) -> None:
        room = window_room(len(self._inflight), self.window)
        if self._inflight:  # fetch about what the byte budget takes, not a whole window
            room = min(room, max(0, INFLIGHT_BYTES - self._inflight_bytes) // self._avg_payload)
        now_m = time.monotonic()
        if room == 0 or not (self._more or now_m - self._last_scan >= 1.0):
            return
        self._last_scan = now_m
        busy_ids = set(self._inflight.values()) | set(self._pubacked)
        cooling = {rid for rid, until in self._cooldown.items() if until > now_m}
        self._cooldown = {rid: t for rid, t in self._cooldown.items() if t > now_m}
        batch = self.outbox.due(
            room,
            busy_ids | cooling,
            time.time(),
            self.outbox_cfg.resend_after_s,
            self.started_at,
        )
        self._more = len(batch) == room
        for item in batch:
            payload = encode(item.body)  # compressed on the wire; HQ inflates to these bytes
            if not window_fits(
                len(self._inflight), self._inflight_bytes, len(payload), self.window, INFLIGHT_BYTES
            ):
                self._more = True  # the byte budget is full: the rest waits for PUBACKs
                return
            mid = link.publish(self.topics.records, payload, qos=1)
            if mid is None:
                self._more = True
                return
            if not self._inflight:
                self._waiting_since = time.monotonic()
            self._inflight[mid] = item.record_id
            self._inflight_size[mid] = len(payload)
            self._inflight_bytes += len(payload)
            self._avg_payload = max(64, (7 * self._avg_payload + len(payload)) // 8)
            self._count("published")

    # -- roster ------------------------------------------------------------------------
    def _on_roster(self, payload: bytes) -> None:
        if not payload:
            return  # retained roster cleared
        out = receive_roster(
            self.store,
            payload,
            self.topics.roster,
            self.hq_key,
            self.expected_model,
            self.device_id,
        )
        if out.kind == "refused":
            self._count("roster_refused")
            self._roster["last_refused"] = {"at": utc_iso(time.time()), "reason": out.reason}
        elif out.kind == "error":
            self._roster["last_error"] = f"{out.bundle_id}: {out.reason}"
        elif out.kind == "imported":
            self._count("roster_imported")
            self._roster = {
                "bundle_id": out.bundle_id,
                "entries": out.entries,
                "last_refused": None,
            }

    # -- status and housekeeping ---------------------------------------------------
    def _status(self) -> dict[str, Any]:
        try:
            extra = dict(self.status_extra())
        except Exception as exc:  # the daemon's info must not stop uploads
            log.warning("status info unavailable: %s", exc)
            extra = {}
        with self._counters_lock:
            rejected = self.counters["rejected"]
        return status_doc.online_status(
            self.device_id, self.outbox.stats(), dict(self._roster), extra, time.time(), rejected
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

    def _housekeeping(self, now_m: float) -> None:
        if now_m - self._last_purge < self.outbox_cfg.purge_interval_s and self._last_purge:
            return
        self._last_purge = now_m
        try:
            n = self.outbox.purge(self.outbox_cfg.retention_days)
            if n:
                log.info(
                    "purged %d acked records older than %s days", n, self.outbox_cfg.retention_days
                )
        except Exception as exc:
            log.warning("purge failed: %s", exc)

    def _shutdown(self) -> None:
        link, self._link = self._link, None
        try:
            self._flush()
        except Exception as exc:
            log.warning("uplink: final flush failed: %s", exc)
        if link is not None:
            offline = status_doc.encode(status_doc.offline_status(self.device_id))
            link.close(
                self.topics.status if self._online else None, offline if self._online else None
            )
        self._online = False
        self._offline_done.set()
