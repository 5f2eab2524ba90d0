"""Pure parts of the uplink and the outbox SQL over a real SQLite store (no broker)."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from bansos_contract.acks import MAX_ACK_IDS, AckRefused, parse_acks, sign_ack
from bansos_contract.topics import Topics, records_filter
from edge.housekeeping import purge_acked
from edge.keys import b64, device_id_for
from edge.records import canonical_json
from edge.store import OutboxFull, OutboxLimits, Store
from edge.store.outbox import capacity
from edge.uplink import status as status_doc
from edge.uplink.outbox import Outbox, OutboxStats
from edge.uplink.policy import backoff_cap, backoff_delay, resend_due, window_room
from tests.roster_fixtures import fill_store, make_verification, record_builder
from tests.support.mqtt import safe_name


def test_backoff_grows_to_cap_and_jitters_fully() -> None:
    assert [backoff_cap(a, 1.0, 30.0) for a in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_cap(10_000, 0.5, 300.0) == 300.0
    rng = random.Random(7)
    delays = [backoff_delay(4, 1.0, 300.0, rng) for _ in range(2000)]
    assert all(0.0 <= d <= 16.0 for d in delays)
    # Full jitter spreads a fleet over the whole interval, not around one point.
    assert min(delays) < 1.0 and max(delays) > 15.0
    assert 6.5 < sum(delays) / len(delays) < 9.5
    with pytest.raises(ValueError):
        backoff_cap(-1, 1.0, 2.0)


def test_resend_rules() -> None:
    start = 1000.0
    assert resend_due("pending", None, 1001.0, 60.0, start)
    assert not resend_due("acked", 900.0, 5000.0, 60.0, start)
    assert resend_due("sent", 999.0, 1001.0, 60.0, start)  # sent by an earlier run
    assert not resend_due("sent", 1001.0, 1030.0, 60.0, start)  # waiting for the ack
    assert resend_due("sent", 1001.0, 1061.0, 60.0, start)  # ack overdue
    assert resend_due("sent", None, 1001.0, 60.0, start)


def test_capacity_and_window() -> None:
    assert not capacity(9, 100, 10, 1000).full
    full = capacity(10, 100, 10, 1000)
    assert full.full and "10 records" in full.reason and "connect to sync" in full.reason
    assert capacity(1, 1000, 10, 1000).full
    assert window_room(3, 20) == 17 and window_room(25, 20) == 0


def test_topics_refuse_wildcards() -> None:
    t = Topics.for_device("kiosk", "kiosk-0123456789abcdef")
    assert t.records == "kiosk/kiosk-0123456789abcdef/records"
    assert t.acks.endswith("/acks") and t.roster.endswith("/roster")
    assert t.status.endswith("/status")
    assert records_filter() == "kiosk/+/records"
    for bad in ("a/b", "+", "#", "", "x" * 65, "$SYS"):
        with pytest.raises(ValueError):
            Topics.for_device("kiosk", bad)


def test_safe_names_do_not_collide() -> None:
    assert safe_name("hq.ingest") != safe_name("hq_ingest")
    assert safe_name("hq.ingest").startswith("hq_ingest-")


_ACK_KEY = SigningKey(b"\x01" * 32)
_DEV = "kiosk-00112233aabbccdd"


def _signed(
    ids: object, device_id: str = _DEV, key: SigningKey = _ACK_KEY, **extra: object
) -> bytes:
    """An ack signed by `key`, whatever its ids look like (to reach the shape checks)."""
    body = {"v": 1, "type": "ack", "device_id": device_id, "ids": ids, **extra}
    return canonical_json({**body, "sig": b64(key.sign(canonical_json(body)).signature)})


def test_ack_parser_accepts_exact_shape() -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    vk = _ACK_KEY.verify_key
    assert parse_acks(sign_ack(_DEV, ids + ids[:1], _ACK_KEY), _DEV, vk) == ids
    assert parse_acks(sign_ack(_DEV, [], _ACK_KEY), _DEV, vk) == []


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe",
        b"[1,2]",
        b'"ids"',
        b"{}",
        b'{"ids": []}',  # unsigned (the format before HQ signed acks)
        json.dumps({"ids": [str(uuid.uuid4())]}).encode(),
        _signed("a"),
        _signed([1]),
        _signed(["not-a-uuid"]),
        _signed(["0190A7E2-0000-7000-8000-000000000000"]),
        _signed([], extra=1),
        _signed([None]),
        _signed([str(uuid.uuid4())], device_id="kiosk-ffffffffffffffff"),  # B's ack, replayed
        _signed([str(uuid.uuid4())], key=SigningKey(b"\x02" * 32)),  # not HQ's key
        _signed([str(uuid.uuid4())])[:-3] + b'A="}',  # signature altered
        b"[" * 100_000,
        _signed([str(uuid.uuid4()) for _ in range(MAX_ACK_IDS + 1)]),
        _signed(["a" * 600_000]),
    ],
)
def test_ack_parser_refuses_everything_else(payload: bytes) -> None:
    with pytest.raises(AckRefused):
        parse_acks(payload, _DEV, _ACK_KEY.verify_key)


def test_ack_parser_needs_hq_key() -> None:
    with pytest.raises(AckRefused, match="no HQ signing key"):
        parse_acks(sign_ack(_DEV, [], _ACK_KEY), _DEV, None)


def _store(tmp_path: Path, n: int) -> tuple[Store, list[str]]:
    store = Store(tmp_path / "edge.db")
    recs = fill_store(store, SigningKey.generate(), n)
    return store, [r["id"] for r in recs]


def test_outbox_moves_forward_only(tmp_path: Path) -> None:
    store, ids = _store(tmp_path, 6)
    ob = Outbox(store, 100, 1 << 20)
    start = 1000.0
    due = ob.due(4, [], 1000.0, 60.0, start)
    assert [o.record_id for o in due] == ids[:4]
    assert json.loads(due[0].body)["id"] == ids[0]
    assert [o.record_id for o in ob.due(10, ids[:2], 1000.0, 60.0, start)] == ids[2:]
    assert ob.mark_sent(ids[:3], now=1001.0) == 3
    assert ob.mark_acked([ids[0], str(uuid.uuid4())], now=1002.0) == 1
    # A late PUBACK does not undo the ack.
    assert ob.mark_sent([ids[0]], now=1003.0) == 0
    s = ob.stats(now=1010.0)
    assert (s.pending, s.sent, s.acked, s.depth) == (3, 2, 1, 5)
    assert s.last_sync == 1002.0 and not s.full
    # sent and waiting for the ack: not due; pending: due.
    assert [o.record_id for o in ob.due(10, [], 1030.0, 60.0, start)] == ids[3:]
    # ack overdue: due again, after the pending ones (each part oldest first).
    again = ids[3:] + ids[1:3]
    assert [o.record_id for o in ob.due(10, [], 1062.0, 60.0, start)] == again
    assert [o.record_id for o in ob.due(4, [], 1062.0, 60.0, start)] == again[:4]
    # a new run (started after the PUBACKs) sends everything not acked.
    assert [o.record_id for o in ob.due(10, [], 1030.0, 60.0, 1020.0)] == again
    attempts = dict(store.conn.execute("SELECT record_id, attempts FROM outbox").fetchall())
    assert attempts[ids[1]] == 1 and attempts[ids[5]] == 0


def test_outbox_full_refuses_and_status_says_so(tmp_path: Path) -> None:
    store, ids = _store(tmp_path, 3)
    ob = Outbox(store, 3, 1 << 20)
    s = ob.stats()
    assert s.full and "3 records" in s.full_reason
    key = SigningKey.generate()
    with pytest.raises(OutboxFull):
        store.append(
            record_builder(make_verification(9), device_id_for(key.verify_key), key),
            OutboxLimits(3, 1 << 20),
        )
    assert store.record_count() == 3  # refused, nothing dropped
    doc = status_doc.online_status("kiosk-x", s, {"bundle_id": None}, {"gps": "ok"}, 0.0)
    assert doc["accepting"] is False and doc["queue"]["full"] is True
    assert "connect to sync" in doc["refusing_reason"]
    ob.mark_sent(ids)
    ob.mark_acked(ids[:1])
    assert not ob.stats().full


def test_purge_only_after_retention(tmp_path: Path) -> None:
    store, ids = _store(tmp_path, 4)
    ob = Outbox(store, 100, 1 << 20)
    ob.mark_acked(ids[:2], now=1000.0)
    ob.mark_acked(ids[3:], now=1000.0)
    assert purge_acked(store, retention_days=1.0, now=1000.0 + 3600) == 0
    # Only the contiguous acked run goes; ids[2] is not acked so ids[3] stays.
    assert purge_acked(store, retention_days=1.0, now=1000.0 + 86401) == 2
    assert store.record_count() == 2


def test_status_payloads() -> None:
    s = OutboxStats(2, 1, 5, 3, 900, 12.5, 1_790_000_000.0, False, "")
    extra = {"gps": {"mode": 3}, "model": "abc", "state": "hijack"}
    doc = status_doc.online_status("kiosk-1", s, {"bundle_id": "b1"}, extra, 1_790_000_100.0)
    assert doc["state"] == "online" and doc["gps"] == {"mode": 3} and doc["model"] == "abc"
    assert doc["queue"]["depth"] == 3 and doc["queue"]["oldest_pending_age_s"] == 12.5
    assert doc["last_sync"].endswith("Z")
    off = status_doc.offline_status("kiosk-1")
    assert off["state"] == "offline" and off["device_id"] == "kiosk-1"
    assert json.loads(status_doc.encode(doc)) == doc
    s2 = OutboxStats(0, 0, 8, 0, 0, None, None, False, "")
    doc2 = status_doc.online_status("kiosk-1", s2, {"bundle_id": "b1"}, {}, 1_790_000_100.0)
    assert status_doc.change_key(doc) != status_doc.change_key(doc2)


def test_receive_roster_outcomes(tmp_path: Path) -> None:
    from edge.roster_inbox import MAX_ROSTER_BYTES, current_bundle, receive_roster
    from tests.roster_fixtures import MODEL_SHA, signed_bundle

    store = Store(tmp_path / "edge.db")
    hq = SigningKey.generate()
    dev = "kiosk-0123456789abcdef"

    def rx(payload: bytes, key: SigningKey | None = hq) -> tuple[str, str]:
        out = receive_roster(
            store, payload, "kiosk/x/roster", key.verify_key if key else None, MODEL_SHA, dev
        )
        return out.kind, out.reason

    good = json.dumps(signed_bundle(hq, n=2)).encode()
    assert rx(good, None) == (
        "refused",
        "kiosk/x/roster: no HQ signing key configured to verify it",
    )
    assert rx(b" " * (MAX_ROSTER_BYTES + 1))[1].endswith("is too large")
    assert rx(b"\xff")[1].endswith("not UTF-8 JSON")
    assert rx(b"[1]")[0] == "refused"
    assert "not signed by the configured HQ key" in rx(good, SigningKey.generate())[1]
    assert current_bundle(store) is None
    assert rx(good) == ("imported", "")
    assert rx(good) == ("duplicate", "")
    assert current_bundle(store) == "b-2026-11-001"
    kinds = [e["kind"] for e in store.events(20)]
    assert kinds.count("roster_refused") == 5 and kinds.count("roster_imported") == 1
    store.close()
