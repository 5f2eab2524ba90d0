"""`edge hq ingest`: a worker on a shared MQTT v5 subscription that checks, stores, then acks.

Messages arrive on paho's network thread and are queued; one worker thread checks a
batch (pure), commits it, and only then sends the MQTT PUBACKs (manual ack) and the
HQ acks to `kiosk/<id>/acks`. A crash before COMMIT leaves the messages unacknowledged,
so the broker delivers them again. Nothing a kiosk sends can stop the worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.errors import DeviceMissing
from edge.uplink.acks import sign_ack
from edge.uplink.wire import WireError, WireTooLarge, decode
from edge_hq.checks import MALFORMED, STORAGE_REFUSED, TOO_LARGE, Rejected, check_message
from edge_hq.config import HqSettings
from edge_hq.db import Database
from edge_hq.heads import handle_status, status_device, status_subscription
from edge_hq.keys import load_hq_signing
from edge_hq.mqtt_tls import apply_tls
from edge_hq.registry import KeyCache
from edge_hq.store import BatchResult, Incoming, store_batch

log = logging.getLogger(__name__)
ACK_CHUNK = 100  # ids per ack message, well under the kiosk's ack size bound


def records_subscription(settings: HqSettings) -> str:
    b = settings.broker
    return f"$share/{b.share_group}/{b.topic_prefix}/+/records"


def topic_device(topic: str, prefix: str) -> str | None:
    """The <id> of `<prefix>/<id>/records`, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == prefix and parts[2] == "records" and parts[1]:
        return parts[1]
    return None


def ack_payloads(device_id: str, ids: list[str], key: SigningKey) -> list[bytes]:
    """Signed acks for `device_id` (edge.uplink.acks) of at most ACK_CHUNK ids each."""
    return [sign_ack(device_id, ids[i : i + ACK_CHUNK], key) for i in range(0, len(ids), ACK_CHUNK)]


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    forks: int = 0
    acks_published: int = 0
    db_errors: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "reasons"}
        d["reasons"] = dict(self.reasons)
        return d


class IngestWorker:
    """One ingest worker: start(), stop(); several may share the subscription."""

    def __init__(
        self,
        settings: HqSettings,
        db: Database,
        on_batch: Callable[[BatchResult], None] | None = None,
        signing_key: SigningKey | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        # Acks are signed with HQ's signing key (the roster key); loaded at start() when
        # not given, so a worker without its key refuses to start instead of acking unsigned.
        self.signing_key = signing_key
        self.keys = KeyCache(db)
        self.stats = IngestStats()
        self.on_batch = on_batch
        self._queue: queue.Queue[tuple[int, mqtt.MQTTMessage]] = queue.Queue()
        self._generation = 0  # connections so far; a PUBACK only goes on the one that delivered
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        b = settings.broker
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=b.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        apply_tls(self.client, b, settings.source)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # -- MQTT callbacks (network thread) -----------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            log.error("broker refused HQ ingest: %s", rc)
            return
        self._generation += 1
        client.subscribe(records_subscription(self.settings), options=SubscribeOptions(qos=1))
        b = self.settings.broker  # signed heads in the kiosks' status (hq/edge_hq/heads.py)
        client.subscribe(
            status_subscription(b.share_group, b.topic_prefix), options=SubscribeOptions(qos=1)
        )
        log.info("ingest %s connected", self.settings.broker.client_id)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[Any], _p: Any = None
    ) -> None:
        if any(getattr(rc, "is_failure", False) for rc in codes):
            log.error("broker refused the records subscription: %s", codes)
            return
        self._connected.set()
        log.info(
            "ingest %s subscribed to %s",
            self.settings.broker.client_id,
            records_subscription(self.settings),
        )

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("ingest disconnected (%s); paho reconnects", rc)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put((self._generation, msg))

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self.signing_key is None:
            key_dir = Path(self.settings.keys.dir)
            try:
                self.signing_key = load_hq_signing(key_dir)
            except DeviceMissing as exc:
                why = str(exc).split(" (run ", 1)[0]  # the kiosk's hint does not apply here
                raise DeviceMissing(
                    f"{why}: HQ ingest signs every ack with HQ's signing key (run `edge hq"
                    f" keys init`, or set [keys] dir in {self.settings.source})"
                ) from None
        b = self.settings.broker
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = b.session_expiry_s
        props.ReceiveMaximum = max(20, min(65535, 2 * self.settings.ingest.batch_max))
        self.client.connect_async(
            b.host, b.port, keepalive=b.keepalive_s, clean_start=False, properties=props
        )
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="hq-ingest", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and the shared subscription is granted."""
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, then disconnect (unacked messages stay with the broker)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    # -- worker thread ---------------------------------------------------------------
    def _take_batch(self) -> list[tuple[int, mqtt.MQTTMessage]]:
        ing = self.settings.ingest
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + ing.batch_wait_s
        while len(batch) < ing.batch_max:
            left = deadline - time.monotonic()
            try:
                batch.append(
                    self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _check(self, msg: mqtt.MQTTMessage) -> Incoming:
        prefix = self.settings.broker.topic_prefix
        device = topic_device(msg.topic, prefix)
        payload = bytes(msg.payload)
        if device is None:
            verdict: Any = Rejected(MALFORMED, f"unexpected topic {msg.topic[:200]!r}")
        else:
            try:
                # Compressed on the wire (edge.uplink.wire): checked and stored as the JSON.
                payload = decode(payload, self.settings.ingest.max_payload_bytes)
            except WireError as exc:
                why = TOO_LARGE if isinstance(exc, WireTooLarge) else MALFORMED
                return Incoming(msg.topic, device, payload, Rejected(why, str(exc)), token=msg)
            try:
                verdict = check_message(
                    payload, device, self.keys, self.settings.ingest.max_payload_bytes
                )
            except Exception as exc:  # a check must never kill the worker
                log.exception("check failed on %s", msg.topic)
                verdict = Rejected(MALFORMED, f"check failed: {type(exc).__name__}")
        return Incoming(msg.topic, device or "?", payload, verdict, token=msg)

    def commit(self, batch: list[Incoming]) -> BatchResult | None:
        """Store with retries; None only when stopping before the database came back."""
        delay = 0.2
        while True:
            try:
                return store_batch(self.db, batch)
            except Exception as exc:  # database down, deadlock, disk full: retry, never crash
                self.stats.db_errors += 1
                log.error("storing a batch of %d failed (%s); retrying", len(batch), exc)
            isolated = self._isolate(batch)
            if isolated is not None:
                return isolated
            if self._stop.wait(delay):
                return None
            delay = min(delay * 2, 10.0)

    def _isolate(self, batch: list[Incoming]) -> BatchResult | None:
        """One message per transaction, so one record the database refuses cannot block all.

        A refused record goes to quarantine (STORAGE_REFUSED); if even that fails, the
        database itself is down: None, and the whole batch is retried (what did commit
        comes back as duplicates and is acked then).
        """
        total = BatchResult()
        for msg in batch:
            try:
                part = store_batch(self.db, [msg])
            except Exception as exc:
                why = (
                    str(exc).strip().splitlines()[0][:200]
                    if str(exc).strip()
                    else type(exc).__name__
                )
                try:
                    part = store_batch(
                        self.db, [replace(msg, verdict=Rejected(STORAGE_REFUSED, why))]
                    )
                except Exception:
                    return None
            total.stored += part.stored
            total.duplicates += part.duplicates
            total.quarantined += part.quarantined
            total.forks += part.forks
        return total

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            raw = self._take_batch()
            if not raw:
                if self._stop.is_set():
                    break
                continue
            raw = self._heads(raw)
            if not raw:
                continue
            self.stats.received += len(raw)
            batch = [self._check(m) for _gen, m in raw]
            result = self.commit(batch)
            if result is None:
                return
            # COMMIT is done. HQ acks go out first, PUBACKs second: a worker killed between
            # the two leaves the messages with the broker, which delivers them again (a
            # duplicate, acked again); the other order could lose an ack until the kiosk
            # re-sends.
            self._publish_acks(result)
            for gen, m in raw:
                # A message from an earlier connection is being delivered again by the
                # broker (same mid, new connection): that copy gets the PUBACK, after dedup.
                if m.qos > 0 and gen == self._generation:
                    self.client.ack(m.mid, m.qos)
            self.stats.stored += len(result.stored)
            self.stats.duplicates += len(result.duplicates)
            self.stats.quarantined += len(result.quarantined)
            self.stats.forks += result.forks
            for _device, reason in result.quarantined:
                self.stats.reasons[reason] += 1
                log.warning("quarantined a message from %s: %s", _device, reason)
            if self.on_batch is not None:
                self.on_batch(result)

    def _heads(self, raw: list[tuple[int, mqtt.MQTTMessage]]) -> list[tuple[int, mqtt.MQTTMessage]]:
        """Status messages go to edge_hq.heads (and are PUBACKed); records go on."""
        prefix = self.settings.broker.topic_prefix
        rest = []
        for gen, m in raw:
            if status_device(m.topic, prefix) is None:
                rest.append((gen, m))
                continue
            handle_status(self.db, m.topic, bytes(m.payload), prefix, self.keys)
            if m.qos > 0 and gen == self._generation:
                self.client.ack(m.mid, m.qos)
        return rest

    def _publish_acks(self, result: BatchResult) -> None:
        by_device: dict[str, list[str]] = defaultdict(list)
        for device, rid in result.ackable:
            by_device[device].append(rid)
        prefix = self.settings.broker.topic_prefix
        assert self.signing_key is not None  # set in start()
        for device, ids in by_device.items():
            for payload in ack_payloads(device, ids, self.signing_key):
                self.client.publish(f"{prefix}/{device}/acks", payload, qos=1)
                self.stats.acks_published += 1


def run_ingest(
    settings: HqSettings, db: Database, stop: threading.Event, max_seconds: float | None = None
) -> IngestStats:
    """Run one worker until `stop` is set (SIGTERM) or `max_seconds` pass."""
    worker = IngestWorker(settings, db)
    worker.start()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    try:
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(0.5)
    finally:
        worker.stop()
    return worker.stats
