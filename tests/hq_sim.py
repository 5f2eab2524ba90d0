"""A small HQ for uplink tests: subscribes to every kiosk's records, dedups by id, acks.

It acks only after it has "stored" a record (here: recorded the id under a lock), and it
acks duplicates again (the kiosk resends when an ack was lost). It counts every delivery
per id so a test can tell redelivery of the same id from anything else.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bansos_contract.acks import sign_ack
from bansos_contract.wire import WireError, decode
from tests.support.hq import HQ_SIGNING_KEY
from tests.support.mqtt import HQ_IDENTITY, Broker, ClientTls


class HqSim:
    """Connects as the HQ identity with paho's own auto-reconnect (a test helper may)."""

    def __init__(
        self,
        broker: Broker,
        tls: ClientTls,
        ack: bool = True,
        signing_key: SigningKey = HQ_SIGNING_KEY,
    ) -> None:
        """signing_key signs the acks: the HQ key the kiosk under test trusts."""
        self.broker = broker
        self.ack = ack
        self.signing_key = signing_key
        self.lock = threading.Lock()
        self.deliveries: collections.Counter[str] = collections.Counter()
        self.variants: dict[str, set[str]] = collections.defaultdict(set)  # id -> sha256 of bytes
        self.bad: list[str] = []
        self.status: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        self._to_ack: dict[str, list[str]] = collections.defaultdict(list)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.connects = 0
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=HQ_IDENTITY, protocol=mqtt.MQTTv5
        )
        c.tls_set(ca_certs=str(tls.ca_file), certfile=str(tls.cert_file), keyfile=str(tls.key_file))
        # paho annotates int but sleeps on floats; a quick HQ keeps broker-kill tests short.
        c.reconnect_delay_set(min_delay=0.05, max_delay=0.5)  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self.client = c
        self._acker = threading.Thread(target=self._ack_loop, name="hq-acker", daemon=True)

    def start(self) -> HqSim:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(
            self.broker.host, self.broker.port, keepalive=10, clean_start=False, properties=props
        )
        self.client.loop_start()
        self._acker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.client.disconnect()
        self.client.loop_stop()
        self._acker.join(10)

    def _on_connect(self, c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            return
        self.connects += 1
        c.subscribe([("kiosk/+/records", 1), ("kiosk/+/status", 1)])

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        parts = str(msg.topic).split("/")
        if len(parts) != 3:
            return
        device = parts[1]
        try:
            raw = bytes(msg.payload)
            obj = json.loads(decode(raw) if parts[2] == "records" else raw)
        except (ValueError, WireError):
            with self.lock:
                self.bad.append(str(msg.topic))
            return
        if parts[2] == "status":
            with self.lock:
                self.status[device].append(obj)
            return
        rid = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(rid, str) or obj.get("device_id") != device:
            with self.lock:
                self.bad.append(str(msg.topic))
            return
        with self.lock:
            self.deliveries[rid] += 1  # "stored" before it is acked
            self.variants[rid].add(hashlib.sha256(decode(raw)).hexdigest())
            self._to_ack[device].append(rid)
        self._wake.set()

    def _ack_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if not self.ack:
                continue
            with self.lock:
                batches, self._to_ack = self._to_ack, collections.defaultdict(list)
            for device, ids in batches.items():
                for i in range(0, len(ids), 500):
                    payload = sign_ack(device, ids[i : i + 500], self.signing_key)
                    self.client.publish(f"kiosk/{device}/acks", payload, qos=1)
            self._stop.wait(0.02)

    # -- what tests read
    def distinct(self) -> int:
        with self.lock:
            return len(self.deliveries)

    def ids(self) -> set[str]:
        with self.lock:
            return set(self.deliveries)

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.deliveries.values())

    def states(self, device: str) -> list[str]:
        with self.lock:
            return [str(s.get("state")) for s in self.status.get(device, [])]
