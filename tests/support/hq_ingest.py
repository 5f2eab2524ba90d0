"""HQ ingest test helpers shared by the HQ tests: the broker, worker settings, probes, kiosk links."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from edge_hq.config import BrokerConfig, DatabaseConfig, HqSettings, IngestConfig, KeysConfig
from edge_hq.db import is_postgres
from tests.support.hq import SimKiosk, hq_key_dir
from tests.support.mqtt import HQ_IDENTITY, Broker, Pki, connect_client

WORKER_CNS = (HQ_IDENTITY, "hq.ingest-2")


def hq_broker(root: Path, pki: Pki) -> Broker:
    """The shipped ACL; both workers' CNs are ingest identities in it (tests/support/mqtt.py).

    The broker makes the certificate CN the client id, so two workers need two CNs.
    """
    return Broker(root, pki)


def settings_for(pki: Pki, broker: Broker, cn: str, url: str, batch_max: int = 200) -> HqSettings:
    tls = pki.client(cn)
    return HqSettings(
        broker=BrokerConfig(
            host=broker.host, port=broker.port, tls=True, ca_file=str(tls.ca_file),
            cert_file=str(tls.cert_file), key_file=str(tls.key_file), client_id=cn,
            share_group="hq", session_expiry_s=600,
        ),
        database=DatabaseConfig(url=url),
        keys=KeysConfig(dir=str(hq_key_dir())),
        ingest=IngestConfig(batch_max=batch_max, batch_wait_s=0.02),
    )  # fmt: skip


class StoredProbe:
    """Answers 'is this id committed right now?' from a connection of its own (per thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = threading.local()

    def stored(self, ids: list[str]) -> set[str]:
        conn = getattr(self.local, "conn", None)
        marks = ",".join("?" * len(ids))
        if is_postgres(self.url):
            import psycopg

            if conn is None:
                conn = self.local.conn = psycopg.connect(self.url, autocommit=True)
            sql = f"SELECT id FROM records WHERE id IN ({marks.replace('?', '%s')})"
        else:
            if conn is None:
                conn = self.local.conn = sqlite3.connect(self.url, check_same_thread=False)
            sql = f"SELECT id FROM records WHERE id IN ({marks})"
        return {r[0] for r in conn.execute(sql, ids).fetchall()}


class KioskLink:
    """A simulated kiosk's MQTT side: its own cert (CN = device id), publishes, collects acks."""

    def __init__(
        self, broker: Broker, pki: Pki, kiosk: SimKiosk, probe: StoredProbe | None
    ) -> None:
        self.acked: set[str] = set()
        self.ack_before_commit: list[str] = []
        self.lock = threading.Lock()
        self.client = connect_client(broker, pki.client(kiosk.device_id))
        topic = f"kiosk/{kiosk.device_id}/acks"

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            ids = json.loads(msg.payload)["ids"]
            missing = set(ids) - probe.stored(ids) if probe is not None else set()
            with self.lock:
                self.ack_before_commit.extend(missing)
                self.acked.update(ids)

        self.client.on_message = on_message
        self.client.subscribe(topic, qos=1)
        self.topic = f"kiosk/{kiosk.device_id}/records"

    def publish(self, payloads: list[bytes]) -> None:
        infos = [self.client.publish(self.topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(120)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
