"""The real kiosk side meets the real HQ side: edge.store + edge.uplink -> mosquitto -> HQ ingest.

A kiosk's outbox drains to `acked` only through HQ's acks (sent after COMMIT), the records HQ
stores are byte-for-byte the kiosk's, and a roster HQ builds and publishes retained is
verified and imported by the kiosk's uplink; and broker kill -9s mid-drain lose or double
nothing. About 25 s together.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from edge_hq.db import open_database
from edge_hq.ingest import IngestWorker
from edge_hq.publish import publish_retained, roster_topic
from edge_hq.registry import add_device
from edge_hq.report import build_report
from edge_hq.roster_build import build_bundle, parse_kpm_csv
from nacl.signing import SigningKey

from edge.keys import b64
from edge.records import canonical_json
from edge.store import Store
from edge.uplink import Uplink
from tests.roster_fixtures import MODEL_SHA
from tests.support.helpers import wait_for
from tests.support.hq import HQ_VERIFY_KEY, unit_vector
from tests.support.mqtt import HQ_IDENTITY, Pki
from tests.test_hq_ingest import WORKER_CNS, hq_broker, settings_for
from tests.uplink_support import make_kiosk, mqtt_config, outbox_config


def test_kiosk_outbox_drains_through_hq_and_takes_its_roster(pki: Pki, tmp_path: Path) -> None:
    n = 300
    kiosk = make_kiosk(tmp_path / "kiosk", pki, n)
    url = str(tmp_path / "hq.db")
    db = open_database(url)
    add_device(db, kiosk.device_id, b64(bytes(kiosk.key.verify_key)))
    broker = hq_broker(tmp_path / "broker", pki)
    settings = settings_for(pki, broker, HQ_IDENTITY, url)
    roster_tls = pki.client("hq.roster")
    settings = replace(
        settings,
        broker=replace(
            settings.broker,
            roster_cert_file=str(roster_tls.cert_file),
            roster_key_file=str(roster_tls.key_file),
        ),
    )
    hq_key = SigningKey.generate()
    worker = IngestWorker(settings, open_database(url), signing_key=hq_key)
    store = Store(kiosk.db)
    up = Uplink(
        store, mqtt_config(broker, kiosk.tls), outbox_config(), kiosk.device_id,
        hq_key.verify_key, MODEL_SHA, None,
    )  # fmt: skip
    try:
        broker.start()
        worker.start()
        assert worker.wait_connected(60), broker.log_tail()
        up.start()
        wait_for(
            lambda: up.stats()["counters"]["acked"] == n, 120, "the kiosk's outbox acked by HQ"
        )
        assert worker.stats.stored == n and worker.stats.quarantined == 0

        rows = parse_kpm_csv("kpm_id,programme,period\nK1,sembako,2026-11\nK2,pkh,2026-11\n")
        rng = np.random.default_rng(2)
        templates = {"K1": unit_vector(rng), "K2": unit_vector(rng)}
        bundle = build_bundle(rows, templates, MODEL_SHA, hq_key, device_id=kiosk.device_id)
        publish_retained(settings, roster_topic(settings, kiosk.device_id), canonical_json(bundle))
        wait_for(
            lambda: store.roster_summary()["bundle_id"] == bundle["bundle_id"], 60, "roster import"
        )
        assert store.roster_summary()["entries"] == 2
    finally:
        up.stop(20)
        worker.stop()
        broker.kill9()
    kiosk_bodies = {r[0]: r[1] for r in store.conn.execute("SELECT id, body FROM records")}
    store.close()
    hq_bodies = {str(r[0]): str(r[1]) for r in db.rows("SELECT id, body FROM records")}
    assert hq_bodies.keys() == kiosk_bodies.keys()
    assert all(json.loads(hq_bodies[i]) == json.loads(b) for i, b in kiosk_bodies.items())
    dev = build_report(db, None, "test")["devices"][kiosk.device_id]
    assert (dev["records"], dev["last_seq"], dev["gaps"], dev["forks"]) == (n, n, [], [])
    db.close()


@pytest.mark.slow
def test_broker_killed_mid_drain_every_record_stored_once(pki: Pki, tmp_path: Path) -> None:
    """kill -9 the broker twice while a kiosk drains into two HQ workers: nothing lost or doubled."""
    n = 1500
    kiosk = make_kiosk(tmp_path / "kiosk", pki, n)
    url = str(tmp_path / "hq.db")
    db = open_database(url)
    add_device(db, kiosk.device_id, b64(bytes(kiosk.key.verify_key)))
    broker = hq_broker(tmp_path / "broker", pki)
    workers = [
        IngestWorker(settings_for(pki, broker, cn, url, batch_max=50), open_database(url))
        for cn in WORKER_CNS
    ]
    store = Store(kiosk.db)
    up = Uplink(
        store, mqtt_config(broker, kiosk.tls), outbox_config(resend_after_s=3.0), kiosk.device_id,
        HQ_VERIFY_KEY, MODEL_SHA, None,
    )  # fmt: skip

    def stored() -> int:
        row = db.one("SELECT COUNT(*) FROM records")
        return int(row[0]) if row else 0

    try:
        broker.start()
        for w in workers:
            w.start()
        for w in workers:
            assert w.wait_connected(60), broker.log_tail()
        up.start()
        for k in (1, 2):
            wait_for(lambda k=k: stored() >= k * n // 3, 120, f"progress before kill {k}")
            broker.restart(hard=True)
        wait_for(
            lambda: up.stats()["counters"]["acked"] >= n and up.outbox.stats().depth == 0,
            240,
            "all acked",
        )
    finally:
        up.stop(20)
        for w in workers:
            w.stop()
        broker.kill9()
    kiosk_ids = {r[0] for r in store.conn.execute("SELECT id FROM records")}
    store.close()
    assert db.one("SELECT COUNT(*), COUNT(DISTINCT id) FROM records") == (n, n)
    assert {str(r[0]) for r in db.rows("SELECT id FROM records")} == kiosk_ids
    dev = build_report(db, None, "test")["devices"][kiosk.device_id]
    assert (dev["last_seq"], dev["gaps"], dev["forks"]) == (n, [], [])
    assert sum(w.stats.stored for w in workers) == n
    db.close()
