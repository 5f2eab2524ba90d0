"""Signed heads at HQ: a kiosk's status carries its chain's signed head, HQ keeps the
newest per device, and the report flags records that stop short of it (a missing tail).

The end-to-end test runs a real mosquitto (TLS, the shipped ACL) and a real ingest
worker; the kiosk publishes its retained status with its own certificate.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge_hq.checks import check_message
from edge_hq.db import open_database
from edge_hq.ingest import IngestWorker
from edge_hq.registry import KeyCache, add_device
from edge_hq.report import device_report
from edge_hq.store import Incoming, store_batch
from nacl.signing import SigningKey

from edge.records import canonical_json, record_hash
from tests.support.helpers import wait_for
from tests.support.hq import SimKiosk, hq_box_key
from tests.support.mqtt import HQ_IDENTITY, Pki, connect_client
from tests.test_hq_ingest import hq_broker, settings_for


def _chain(kiosk: SimKiosk, n: int) -> list[dict[str, Any]]:
    return [kiosk.record(kpm_id=f"K{i}") for i in range(n)]


def _ingest(db: Any, kiosk: SimKiosk, records: list[dict[str, Any]]) -> None:
    keys = KeyCache(db)
    batch = [
        Incoming(
            f"kiosk/{kiosk.device_id}/records",
            kiosk.device_id,
            canonical_json(r),
            check_message(canonical_json(r), kiosk.device_id, keys),
        )
        for r in records
    ]
    store_batch(db, batch)


def test_report_flags_a_missing_tail(tmp_path: Path) -> None:
    from edge_hq.heads import handle_status, heads_by_device, record_head

    db = open_database(str(tmp_path / "hq.db"))
    kiosk = SimKiosk(hq_box_key().public_key)
    add_device(db, kiosk.device_id, kiosk.public_key)
    records = _chain(kiosk, 8)
    _ingest(db, kiosk, records[:5])  # the kiosk lost 6..8 before sending them
    from edge.records import sign_head

    keys = KeyCache(db)
    head = sign_head(kiosk.key, kiosk.device_id, 8, record_hash(records[-1]), time.time())
    assert record_head(db, kiosk.device_id, head, keys) == "stored"
    d = device_report(db)[kiosk.device_id]
    assert d["missing_tail"] == [6, 8] and d["head_seen"]["seq"] == 8 and d["last_seq"] == 5
    # an older head never replaces a newer one; forged or foreign heads are refused
    old = sign_head(kiosk.key, kiosk.device_id, 3, record_hash(records[2]), time.time())
    assert record_head(db, kiosk.device_id, old, keys) == "older"
    forged = sign_head(SigningKey.generate(), kiosk.device_id, 99, "0" * 64, time.time())
    assert "bad signature" in record_head(db, kiosk.device_id, forged, keys)
    assert record_head(db, kiosk.device_id, {**head, "seq": 9}, keys).endswith("bad signature")
    assert record_head(db, "kiosk-ffffffffffffffff", head, keys) == "unknown device"
    assert heads_by_device(db)[kiosk.device_id]["seq"] == 8
    # once the tail arrives the flag goes
    _ingest(db, kiosk, records[5:])
    d = device_report(db)[kiosk.device_id]
    assert d["missing_tail"] is None and d["head_mismatch"] is False
    # junk statuses never raise
    for junk in (b"\xff", b"[]", b'{"head": 5}', b'{"head": {"seq": "x"}}'):
        handle_status(db, f"kiosk/{kiosk.device_id}/status", junk, "kiosk", keys)
    db.close()


def test_status_head_reaches_hq_through_the_broker(pki: Pki, tmp_path: Path) -> None:
    from edge_hq.heads import heads_by_device

    url = str(tmp_path / "hq.db")
    db = open_database(url)
    kiosk = SimKiosk(hq_box_key().public_key)
    add_device(db, kiosk.device_id, kiosk.public_key)
    records = _chain(kiosk, 4)
    _ingest(db, kiosk, records[:2])
    broker = hq_broker(tmp_path / "broker", pki)
    worker = IngestWorker(settings_for(pki, broker, HQ_IDENTITY, url), open_database(url))
    client = None
    try:
        broker.start()
        worker.start()
        assert worker.wait_connected(60), broker.log_tail()
        client = connect_client(broker, pki.client(kiosk.device_id))
        from edge.records import sign_head

        head = sign_head(kiosk.key, kiosk.device_id, 4, record_hash(records[-1]), time.time())
        status = {"v": 1, "state": "online", "device_id": kiosk.device_id, "head": head}
        client.publish(
            f"kiosk/{kiosk.device_id}/status", json.dumps(status), qos=1, retain=True
        ).wait_for_publish(10)
        wait_for(lambda: kiosk.device_id in heads_by_device(db), 30, "head stored at HQ")
        d = device_report(db)[kiosk.device_id]
        assert d["missing_tail"] == [3, 4]
        assert worker.stats.quarantined == 0  # a status is not a malformed record
    finally:
        if client is not None:
            client.loop_stop()
            client.disconnect()
        worker.stop()
        broker.stop()
        db.close()


def test_kiosk_status_carries_its_signed_head(tmp_path: Path) -> None:
    """Parts.uplink_extra (what the retained status adds) includes the store's signed head."""
    from edge.config import parse_config
    from edge.keys import device_id_for
    from edge.parts import Parts
    from edge.records import check_head
    from edge.store import Store
    from tests.roster_fixtures import fill_store

    key = SigningKey.generate()
    store = Store(tmp_path / "edge.db")
    fill_store(store, key, 3)

    class _Cam:
        def describe(self) -> dict[str, Any]:
            return {"backend": "replay"}

    class _Pipe:
        embedder_sha256 = "ab" * 32

    cfg = parse_config({"mqtt": {"enabled": False}, "gps": {"enabled": False}})
    parts = Parts(cfg, store, _Pipe(), _Cam(), None, None)  # type: ignore[arg-type]
    head = parts.uplink_extra()["head"]
    assert check_head(head, key.verify_key, device_id_for(key.verify_key))["seq"] == 3
    store.close()
