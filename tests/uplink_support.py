"""Shared set-up for the uplink tests: a kiosk's store with real signed records, configs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.config import MqttConfig, OutboxConfig
from edge.keys import device_id_for
from edge.store import Store
from tests.roster_fixtures import fill_store
from tests.support.mqtt import Broker, ClientTls, Pki


@dataclass
class Kiosk:
    key: SigningKey
    device_id: str
    db: Path
    tls: ClientTls


def make_kiosk(root: Path, pki: Pki, n: int, evidence: bool = False) -> Kiosk:
    """A device key, its certificate (CN = device id) and a database with n records."""
    key = SigningKey.generate()
    device_id = device_id_for(key.verify_key)
    db = root / "edge.db"
    store = Store(db)
    try:
        box = PrivateKey.generate().public_key if evidence else None
        with store.transaction():  # one commit for the lot: set-up speed, not under test
            fill_store(store, key, n, box)
    finally:
        store.close()
    return Kiosk(key, device_id, db, pki.client(device_id))


def mqtt_config(broker: Broker, tls: ClientTls, **kw: object) -> MqttConfig:
    base: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "ca_file": str(tls.ca_file),
        "cert_file": str(tls.cert_file),
        "key_file": str(tls.key_file),
        "keepalive_s": 5,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 2.0,
        "connect_timeout_s": 5.0,
        "status_interval_s": 2.0,
    }
    base.update(kw)
    return MqttConfig(**base)  # type: ignore[arg-type]


def outbox_config(**kw: object) -> OutboxConfig:
    base: dict[str, object] = {"resend_after_s": 5.0}
    base.update(kw)
    return OutboxConfig(**base)  # type: ignore[arg-type]
