"""HQ storage on SQLite and a real PostgreSQL: migrations, registry, batches, report, review."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edge_hq.checks import BAD_SIGNATURE, ID_CONFLICT, MALFORMED, UNKNOWN_DEVICE, check_message
from edge_hq.db import Database, open_database
from edge_hq.registry import KeyCache, add_device, list_devices
from edge_hq.report import build_report
from edge_hq.review import NoEvidence, review_record
from edge_hq.schema import MIGRATIONS
from edge_hq.store import Incoming, store_batch

from edge.errors import BadInput
from edge.records import canonical_json
from tests.support.hq import PgServer, SimKiosk, hq_box_key, unit_vector


def _in(
    db: Database, kiosk: SimKiosk, rec: dict | None = None, payload: bytes | None = None
) -> Incoming:
    data = canonical_json(rec) if payload is None else payload
    topic = f"kiosk/{kiosk.device_id}/records"
    return Incoming(
        topic, kiosk.device_id, data, check_message(data, kiosk.device_id, KeyCache(db))
    )


def test_migrations_are_named_and_applied_once(db_url: str) -> None:
    db = open_database(db_url)
    assert db.migrations() == [name for name, _ in MIGRATIONS]
    db.close()
    again = open_database(db_url)
    assert again.migrate() == []
    again.close()


def test_registry_binds_id_to_key(db_url: str) -> None:
    db = open_database(db_url)
    box = hq_box_key()
    k1, k2 = SimKiosk(box.public_key), SimKiosk(box.public_key)
    add_device(db, k1.device_id, k1.public_key, "van 7")
    add_device(db, k1.device_id, k1.public_key)  # idempotent
    with pytest.raises(BadInput, match="does not belong to this key"):
        add_device(db, k1.device_id, k2.public_key)
    with pytest.raises(BadInput, match="PUBKEY"):
        add_device(db, k1.device_id, "not-base64!")
    assert [(d.device_id, d.label) for d in list_devices(db)] == [(k1.device_id, "van 7")]
    db.close()


def test_batch_stores_dedups_quarantines_reports_and_reviews(db_url: str) -> None:
    db = open_database(db_url)
    box = hq_box_key()
    kiosk, stranger = SimKiosk(box.public_key), SimKiosk(box.public_key)
    add_device(db, kiosk.device_id, kiosk.public_key)
    rng = np.random.default_rng(1)
    face = unit_vector(rng)
    chain = [
        kiosk.record(kpm_id="K1", embedding=unit_vector(rng)),
        kiosk.record(kpm_id="K2", embedding=unit_vector(rng), decision="no_match"),
        kiosk.record(kpm_id="K3", embedding=face),
        kiosk.record(kpm_id="K4", embedding=face + 0.02 * unit_vector(rng)),  # same face, other KPM
    ]
    lost = kiosk.record(kpm_id="K5")  # never delivered: a gap at seq 5
    chain.append(kiosk.record(kpm_id="K6", geofence="outside"))
    tampered = dict(chain[0], kpm_id="KX")
    batch = [_in(db, kiosk, r) for r in chain]
    batch += [
        _in(db, kiosk, chain[0]),  # duplicate inside one batch
        _in(db, kiosk, tampered),
        _in(db, stranger, stranger.record()),
        _in(db, kiosk, payload=b'{"seq": 1'),
    ]
    out = store_batch(db, batch)
    assert sorted(i for _, i in out.stored) == sorted(r["id"] for r in chain)
    assert [i for _, i in out.duplicates] == [chain[0]["id"]]
    assert sorted(r for _, r in out.quarantined) == sorted(
        [BAD_SIGNATURE, UNKNOWN_DEVICE, MALFORMED]
    )
    assert out.forks == 0

    # everything delivered again: nothing new, every good record ackable again
    again = store_batch(db, [_in(db, kiosk, r) for r in chain] + [_in(db, kiosk, tampered)])
    assert again.stored == [] and len(again.duplicates) == len(chain)
    assert db.one("SELECT seen FROM quarantine WHERE reason = ?", (BAD_SIGNATURE,)) == (2,)

    # a fork at seq 3 (same predecessor, other content) is stored and flagged
    fork = kiosk.record(kpm_id="K9", seq=3, prev_hash=chain[2]["prev_hash"], advance=False)
    forked = store_batch(db, [_in(db, kiosk, fork)])
    assert len(forked.stored) == 1 and forked.forks >= 1
    assert db.one("SELECT COUNT(*) FROM chain_issues WHERE kind = 'fork' AND seq = 3") == (1,)

    # the same id with other (validly signed) content is a conflict, not a duplicate
    clash = kiosk.record(kpm_id="KZ", seq=9, advance=False, record_id=chain[1]["id"])
    conflict = store_batch(db, [_in(db, kiosk, clash)])
    assert conflict.quarantined == [(kiosk.device_id, ID_CONFLICT)] and conflict.ackable == []
    assert lost["seq"] == 5

    rep = build_report(db, box, "auditor-1")
    dev = rep["devices"][kiosk.device_id]
    assert dev["records"] == len(chain) + 1
    assert dev["last_seq"] == 6
    assert dev["gaps"] == [[5, 5]] and dev["missing"] == 1
    assert dev["forks"] == [3]
    assert dev["bad_signatures"] == 1
    assert rep["unknown_devices"] == {stranger.device_id: 1}
    (period,) = rep["periods"]
    assert period["decisions"] == {"match": 5, "no_match": 1}
    assert period["matches"] == 5
    assert period["no_match_rate"] == round(1 / 6, 6)
    assert period["outside_geofence"] == 1
    (suspect,) = rep["suspects"]
    assert suspect["kpm_ids"] == ["K3", "K4"]
    assert sorted(suspect["record_ids"]) == sorted([chain[2]["id"], chain[3]["id"]])
    assert db.one("SELECT actor, action FROM audit") == ("auditor-1", "report-1:N")

    # review: audited first, then the evidence opens with HQ's key
    seen = review_record(db, box, chain[2]["id"], "inspector.ana", "case 12")
    assert np.allclose(np.frombuffer(seen.evidence.embedding, "<f4"), face)
    row = db.one("SELECT actor, action, record_id, detail FROM audit WHERE action = 'review'")
    assert row is not None and row[:3] == ("inspector.ana", "review", chain[2]["id"])
    assert json.loads(row[3]) == {"reason": "case 12"}
    with pytest.raises(NoEvidence):
        review_record(db, box, chain[4]["id"], "inspector.ana")
    with pytest.raises(BadInput, match="reviewer"):
        review_record(db, box, chain[2]["id"], "")
    with pytest.raises(BadInput, match="does not open"):
        review_record(db, hq_box_key(), chain[2]["id"], "inspector.ana")
    db.close()


def test_a_record_postgres_refuses_is_quarantined_not_a_blocked_worker(pg: PgServer) -> None:
    """A kiosk-signed record with a NUL in a text column: PostgreSQL refuses it; the rest commit."""
    from edge_hq.checks import STORAGE_REFUSED
    from edge_hq.config import BrokerConfig, DatabaseConfig, HqSettings
    from edge_hq.ingest import IngestWorker

    from edge.keys import b64
    from edge.records import signed_bytes

    url = pg.new_database()
    db = open_database(url)
    kiosk = SimKiosk(hq_box_key().public_key)
    add_device(db, kiosk.device_id, kiosk.public_key)
    good = [kiosk.record(kpm_id=f"K{i}") for i in range(3)]
    poison = kiosk.record(kpm_id="KP")
    poison["captured_at"] = "2026-11-01T00:00:00.000\x00Z"
    poison["sig"] = b64(kiosk.key.sign(signed_bytes(poison)).signature)
    settings = HqSettings(broker=BrokerConfig(tls=False), database=DatabaseConfig(url=url))
    worker = IngestWorker(settings, db)  # not started: commit() is what the worker thread runs
    batch = [_in(db, kiosk, r) for r in [*good, poison]]
    assert all(b.verdict.__class__.__name__ == "Accepted" for b in batch)
    result = worker.commit(batch)
    assert result is not None
    assert sorted(i for _, i in result.stored) == sorted(r["id"] for r in good)
    assert result.quarantined == [(kiosk.device_id, STORAGE_REFUSED)]
    assert worker.stats.db_errors == 1
    assert db.one("SELECT COUNT(*) FROM records") == (3,)
    row = db.one("SELECT reason, detail FROM quarantine")
    assert row is not None and row[0] == STORAGE_REFUSED and row[1]
    db.close()
