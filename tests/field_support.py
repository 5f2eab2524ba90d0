"""A kiosk on an emulated field link, for tests/test_field_*.py and bench/field.py.

`FieldRig` wires real parts: mosquitto (shipped config, mTLS), the link emulator between the
kiosk and the broker, the kiosk's `Uplink` over its SQLite outbox, a small HQ that acks
(`HqSim`, straight to the broker: only the kiosk's link is weak) and a watcher on the kiosk's
retained status topic. It records when things happened (monotonic clock) so a test or the
bench can line the kiosk's view and HQ's view up with the link's schedule.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from nacl.public import PublicKey

from edge.config import MqttConfig
from edge.store import Store
from edge.uplink import Uplink
from tests.hq_sim import HqSim
from tests.link_emulator import LinkEmulator, Phase
from tests.roster_fixtures import make_verification, record_builder
from tests.support.helpers import wait_for
from tests.support.hq import HQ_VERIFY_KEY
from tests.support.mqtt import HQ_IDENTITY, Broker, Pki
from tests.uplink_support import Kiosk, make_kiosk, mqtt_config, outbox_config

WATCH_IDENTITY = "hq.ops"  # its own CN: the broker makes the CN the client id


class StatusWatch:
    """HQ's view of one kiosk: every status message with its arrival time."""

    def __init__(self, broker: Broker, pki: Pki, device_id: str) -> None:
        self.seen: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        tls = pki.client(WATCH_IDENTITY)
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=WATCH_IDENTITY, protocol=mqtt.MQTTv5
        )
        c.tls_set(ca_certs=str(tls.ca_file), certfile=str(tls.cert_file), keyfile=str(tls.key_file))
        topic = f"kiosk/{device_id}/status"
        c.on_connect = lambda cl, _u, _f, rc, _p: None if rc.is_failure else cl.subscribe(topic, 1)
        c.on_message = self._on_message
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        self.client = c

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        import json

        try:
            state = str(json.loads(bytes(msg.payload)).get("state"))
        except (ValueError, AttributeError):
            state = "?"
        with self.lock:
            self.seen.append((time.monotonic(), state))

    def states(self) -> list[tuple[float, str]]:
        with self.lock:
            return list(self.seen)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ConnWatch(threading.Thread):
    """The kiosk's view: when `Uplink.connected` changed (polled every 20 ms)."""

    def __init__(self, up: Uplink) -> None:
        super().__init__(name="conn-watch", daemon=True)
        self.up = up
        self.changes: list[tuple[float, bool]] = []
        self._stop_ev = threading.Event()

    def run(self) -> None:
        last: bool | None = None
        while not self._stop_ev.wait(0.02):
            now = self.up.connected
            if now != last:
                self.changes.append((time.monotonic(), now))
                last = now

    def stop(self) -> None:
        self._stop_ev.set()
        self.join(5)


class Appender(threading.Thread):
    """Appends signed records at `rate` per second, as the daemon would after verifications."""

    def __init__(self, rig: FieldRig, start_index: int, n: int, rate: float) -> None:
        super().__init__(name="appender", daemon=True)
        self.rig, self.start_index, self.n, self.rate = rig, start_index, n, rate
        self.done = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        k = self.rig.kiosk
        for j in range(self.n):
            due = t0 + j / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            v = make_verification(self.start_index + j, hq_box=self.rig.hq_box)
            self.rig.store.append(record_builder(v, k.device_id, k.key), head_key=k.key)
            self.rig.up.wake()
        self.done.set()


def field_mqtt_config(rig_broker: Broker, kiosk: Kiosk, port: int, **kw: Any) -> MqttConfig:
    """The kiosk's MQTT settings through the emulator (test defaults, overridable)."""
    return mqtt_config(rig_broker, kiosk.tls, port=port, **kw)


class FieldRig:
    """Broker + emulator + kiosk uplink + HQ + status watcher; `close()` tears all down."""

    def __init__(
        self,
        root: Path,
        pki: Pki,
        phases: list[Phase],
        *,
        queued: int,
        scale: float = 1.0,
        evidence: bool = False,
        resend_after_s: float = 30.0,
        **mqtt_kw: Any,
    ) -> None:
        self.broker = Broker(root / "broker", pki)
        self.broker.start()
        self.hq_box: PublicKey | None = None
        self.kiosk = make_kiosk(root, pki, queued, evidence=evidence)
        if evidence:
            from nacl.public import PrivateKey

            self.hq_box = PrivateKey.generate().public_key
        self.hq = HqSim(self.broker, pki.client(HQ_IDENTITY)).start()
        wait_for(lambda: self.hq.connects > 0, 30, "HQ connected")
        self.watch = StatusWatch(self.broker, pki, self.kiosk.device_id)
        self.emu = LinkEmulator(self.broker.port, phases, scale=scale).start()
        self.store = Store(self.kiosk.db)
        cfg = field_mqtt_config(self.broker, self.kiosk, self.emu.port, **mqtt_kw)
        self.up = Uplink(
            self.store,
            cfg,
            outbox_config(resend_after_s=resend_after_s),
            self.kiosk.device_id,
            HQ_VERIFY_KEY,
            "m",
        )
        self.conn = ConnWatch(self.up)

    def start(self) -> FieldRig:
        self.up.start()
        self.conn.start()
        return self

    def kiosk_ids(self) -> dict[str, str]:
        """Record id -> sha256 of the signed body, as the kiosk stored it."""
        import hashlib

        with self.store.lock:
            rows = self.store.conn.execute("SELECT id, body FROM records").fetchall()
        return {str(i): hashlib.sha256(str(b).encode()).hexdigest() for i, b in rows}

    def close(self) -> None:
        for step in (
            lambda: self.conn.stop(),
            lambda: self.up.stop(20),
            lambda: self.emu.close(),
            lambda: self.watch.stop(),
            lambda: self.hq.stop(),
            lambda: self.store.close(),
            lambda: self.broker.kill9(),
        ):
            # tear-down must reach the broker kill whatever failed before
            with contextlib.suppress(Exception):
                step()
