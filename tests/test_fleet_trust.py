"""Issue 20: a stolen kiosk's own valid certificate against the broker, HQ and its own kiosk.

Each test is an attack with kiosk A's certificate against a real mosquitto started with
the shipped config and ACL (deploy/mosquitto), real keys and the real HQ worker or Uplink.
Each one succeeded before the defence (see the report of issue 20 for the failures).
Runtime: about 40 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_hq.db import Database, open_database
from edge_hq.ingest import IngestWorker
from edge_hq.registry import add_device

from edge.records import canonical_json
from edge.roster import format_utc, sign_bundle
from edge.store import Store
from edge.uplink import Uplink
from edge.uplink.acks import sign_ack
from edge.uplink.topics import Topics
from tests.roster_fixtures import MODEL_SHA, bundle_body
from tests.support.helpers import wait_for
from tests.support.hq import HQ_SIGNING_KEY, HQ_VERIFY_KEY, SimKiosk, hq_box_key
from tests.support.mqtt import HQ_IDENTITY, Broker, Pki, connect_client, puback, suback
from tests.test_hq_ingest import KioskLink, settings_for
from tests.uplink_support import make_kiosk, mqtt_config, outbox_config


def close(*clients: Any) -> None:
    for c in clients:
        c.disconnect()
        c.loop_stop()


@contextlib.contextmanager
def hq_world(
    pki: Pki, tmp_path: Path, sender: SimKiosk, *others: SimKiosk
) -> Iterator[tuple[Database, Broker, IngestWorker, KioskLink]]:
    """A broker with the shipped config, a real ingest worker (SQLite), the kiosks registered
    and `sender`'s MQTT link (its own certificate) ready to publish records."""
    url = str(tmp_path / "hq.db")
    db = open_database(url)
    for k in (sender, *others):
        add_device(db, k.device_id, k.public_key)
    broker = Broker(tmp_path / "broker", pki)
    worker = IngestWorker(settings_for(pki, broker, HQ_IDENTITY, url), open_database(url))
    link: KioskLink | None = None
    try:
        broker.start()
        worker.start()
        assert worker.wait_connected(60), broker.log_tail()
        link = KioskLink(broker, pki, sender, None)
        yield db, broker, worker, link
    finally:
        if link is not None:
            link.close()
        worker.stop()
        broker.kill9()


# -- 1. one kiosk certificate makes HQ miss records from the whole fleet -------------------


def test_kiosk_joining_hq_shared_group_loses_no_record(pki: Pki, tmp_path: Path) -> None:
    box = hq_box_key()
    kiosk_a, kiosk_b = SimKiosk(box.public_key), SimKiosk(box.public_key)
    a_tls = pki.client(kiosk_a.device_id)
    with hq_world(pki, tmp_path, kiosk_b, kiosk_a) as (db, broker, _worker, link):
        # The attack: A's certificate joins HQ's group in a persistent session ...
        thief = connect_client(broker, a_tls, clean_start=False, session_expiry=3600)
        answer = suback(thief, "$share/hq/kiosk/+/records")
        close(thief)
        # ... which the genuine daemon then resumes, online while the fleet uploads.
        daemon = connect_client(broker, a_tls, clean_start=False, session_expiry=3600)
        try:
            records = [canonical_json(kiosk_b.record(kpm_id=f"K{i}")) for i in range(1000)]
            t0 = time.monotonic()
            link.publish(records)  # each once, every one PUBACKed; no kiosk resend follows

            def stored() -> int:
                row = db.one("SELECT COUNT(*) FROM records")
                return int(row[0]) if row else 0

            deadline = time.monotonic() + 60
            while stored() < 1000 and time.monotonic() < deadline:
                time.sleep(0.2)
            n = stored()
            print(f"shared-group attack: A's SUBACK {answer!r}; HQ stored {n} of 1000 in "
                  f"{time.monotonic() - t0:.1f} s on first delivery")  # fmt: skip
            assert n == 1000, f"HQ stored {n} of 1000 on first delivery (A's SUBACK: {answer})"
            assert answer == "Not authorized"
            wait_for(lambda: len(link.acked) == 1000, 60, "an ack for every record")
        finally:
            close(daemon)


# -- 2. a kiosk fakes HQ's acks -------------------------------------------------------------


def test_faked_ack_marks_nothing_acked(pki: Pki, broker: Broker, tmp_path: Path) -> None:
    kiosk = make_kiosk(tmp_path, pki, 20)
    topics = Topics.for_device("kiosk", kiosk.device_id)
    store = Store(kiosk.db)
    with store.lock:
        ids = [r[0] for r in store.conn.execute("SELECT record_id FROM outbox").fetchall()]
    # HQ is stopped. A's certificate publishes a retained ack for all its records ...
    thief = connect_client(broker, kiosk.tls)
    fake = canonical_json({"ids": ids})
    code = puback(thief, topics.acks, fake, retain=True)
    close(thief)
    # ... and a genuine HQ ack made for kiosk B is replayed onto A's topic.
    hq = connect_client(broker, pki.client("hq.ingest.2"))
    other = sign_ack("kiosk-bbbbbbbbbbbbbbbb", ids, HQ_SIGNING_KEY)
    assert puback(hq, topics.acks, other) in (0, 16)
    up = Uplink(
        store, mqtt_config(broker, kiosk.tls), outbox_config(), kiosk.device_id,
        HQ_VERIFY_KEY, MODEL_SHA,
    )  # fmt: skip
    up.start()
    try:
        wait_for(lambda: up.stats()["sent"] + up.stats()["acked"] == 20, 30, "all 20 PUBACKed")
        hq.publish(topics.acks, other, qos=1).wait_for_publish(10)
        time.sleep(2.0)  # the retained fake and the replay have arrived by now
        s = up.stats()
        print(f"faked ack: A's PUBACK on its acks topic {code}; outbox {s['sent']} sent, "
              f"{s['acked']} acked; refused acks {s['counters']['ack_refused']}")  # fmt: skip
        assert s["acked"] == 0 and s["sent"] == 20, s
        assert s["oldest_sent_age_s"] >= 1.0, s  # in the status: PUBACKed, no ack from HQ
        assert code == 135  # the broker refuses a kiosk's publish on its acks topic
        assert s["counters"]["ack_refused"] >= 1  # the replayed ack for B, refused and logged
        # HQ's own signed ack for A still works
        hq.publish(topics.acks, sign_ack(kiosk.device_id, ids, HQ_SIGNING_KEY), qos=1)
        wait_for(lambda: up.stats()["acked"] == 20, 20, "HQ's signed ack")
    finally:
        up.stop(20)
        close(hq)
        store.close()


# -- 3. an old roster replaces the current one ---------------------------------------------


def _bundle(bundle_id: str, issued: float, valid_from: float, valid_until: float) -> bytes:
    body = bundle_body(3, bundle_id=bundle_id)
    body.update(
        issued_at=format_utc(issued),
        valid_from=format_utc(valid_from),
        valid_until=format_utc(valid_until),
    )
    return canonical_json(sign_bundle(body, HQ_SIGNING_KEY))


@pytest.mark.slow
def test_older_or_expired_roster_refused_current_restored(
    pki: Pki, broker: Broker, tmp_path: Path
) -> None:
    now = time.time()
    day = 86400.0
    current = _bundle("b-current", now - 60, now - day, now + 30 * day)
    older = _bundle("b-older", now - 40 * day, now - 40 * day, now + 30 * day)
    expired = _bundle("b-expired", now - 30, now - 60 * day, now - day)
    kiosk = make_kiosk(tmp_path, pki, 0)
    topics = Topics.for_device("kiosk", kiosk.device_id)
    store = Store(kiosk.db)
    up = Uplink(
        store, mqtt_config(broker, kiosk.tls), outbox_config(), kiosk.device_id,
        HQ_VERIFY_KEY, MODEL_SHA,
    )  # fmt: skip
    roster = connect_client(broker, pki.client("hq.roster"))
    thief: Any = None

    def in_force() -> set[str]:
        with store.lock:
            rows = store.conn.execute("SELECT DISTINCT bundle_id FROM roster").fetchall()
        return {r[0] for r in rows}

    up.start()
    try:
        assert puback(roster, topics.roster, current, retain=True) in (0, 16)
        wait_for(lambda: in_force() == {"b-current"}, 30, "the current bundle imported")
        # The attack: A's certificate publishes an expired bundle, retained, on its roster
        # (its connection takes the daemon's session over for a moment: same CN, same id).
        thief = connect_client(broker, kiosk.tls)
        code = puback(thief, topics.roster, expired, retain=True)
        close(thief)
        thief = None
        wait_for(lambda: up.connected, 30, "the daemon back online")
        # The same bytes and an older bundle reach the kiosk on HQ's own topic (a replay).
        for i, payload in enumerate((expired, older), 1):
            roster.publish(topics.roster, payload, qos=1, retain=True).wait_for_publish(10)
            wait_for(
                lambda i=i: (
                    up.stats()["counters"]["roster_refused"] >= i  # type: ignore[misc]
                    or in_force() != {"b-current"}
                ),
                20,
                "the kiosk to take or refuse the bundle",
            )
        time.sleep(1.0)
        after_attack = in_force()
        refused = up.stats()["counters"]["roster_refused"]
        # HQ re-publishes the current bundle
        roster.publish(topics.roster, current, qos=1, retain=True).wait_for_publish(10)
        time.sleep(2.0)
        restored = in_force()
        print(f"roster attack: A's PUBACK on its roster topic {code}; in force after the "
              f"attack {sorted(after_attack)}, refused {refused}; after re-publishing the "
              f"current {sorted(restored)}")  # fmt: skip
        assert after_attack == {"b-current"}, after_attack
        assert restored == {"b-current"}, restored
        assert code == 135
        assert refused == 2
        with store.lock:
            reasons = [
                r[0] for r in store.conn.execute(
                    "SELECT detail FROM events WHERE kind = 'roster_refused'"
                ).fetchall()
            ]  # fmt: skip
        assert any("expired at" in r for r in reasons) and any(
            "is older than" in r for r in reasons
        )
    finally:
        up.stop(20)
        close(roster)
        if thief is not None:
            close(thief)
        store.close()


def test_current_roster_reimported_after_its_entries_were_replaced(
    pki: Pki, broker: Broker, tmp_path: Path
) -> None:
    """Even when an older bundle did get in (e.g. `edge roster import` by hand), the
    current one published again is imported again, not skipped as already known."""
    now = time.time()
    day = 86400.0
    kiosk = make_kiosk(tmp_path, pki, 0)
    store = Store(kiosk.db)
    from edge.roster import verify_bundle

    cur = _bundle("b-current", now - 60, now - day, now + 30 * day)
    old = _bundle("b-older", now - 40 * day, now - 40 * day, now + 30 * day)
    import json

    for payload in (cur, old):  # the older one last, by hand
        store.import_bundle(verify_bundle(json.loads(payload), HQ_VERIFY_KEY, MODEL_SHA))
    topics = Topics.for_device("kiosk", kiosk.device_id)
    up = Uplink(
        store, mqtt_config(broker, kiosk.tls), outbox_config(), kiosk.device_id,
        HQ_VERIFY_KEY, MODEL_SHA,
    )  # fmt: skip
    roster = connect_client(broker, pki.client("hq.roster"))
    up.start()
    try:
        roster.publish(topics.roster, cur, qos=1, retain=True).wait_for_publish(10)

        def in_force() -> set[str]:
            with store.lock:
                rows = store.conn.execute("SELECT DISTINCT bundle_id FROM roster").fetchall()
            return {r[0] for r in rows}

        wait_for(lambda: in_force() == {"b-current"}, 30, "the current bundle restored")
    finally:
        up.stop(20)
        close(roster)
        store.close()


# -- 4. HQ's quarantine keeps rejected payloads whole -----------------------------------------


@pytest.mark.parametrize("kind", ["json", "bomb"])
def test_quarantine_keeps_a_bounded_prefix(pki: Pki, tmp_path: Path, kind: str) -> None:
    kiosk = SimKiosk(hq_box_key().public_key)
    if kind == "json":
        payload = b'{"id": "' + b"x" * 1_500_000 + b'"}'
    else:  # deflate bomb in the wire format: 8 MB on the wire, inflating far beyond 1 MiB
        c = zlib.compressobj(1, zlib.DEFLATED, -15)
        payload = b"\x01" + c.compress(b"{" + bytes(200_000_000)) + c.flush()
        payload += bytes(8_000_000 - len(payload))
    with hq_world(pki, tmp_path, kiosk) as (db, _broker, worker, link):
        link.publish([payload])
        wait_for(lambda: worker.stats.quarantined >= 1, 60, "the payload quarantined")
    row = db.one("SELECT LENGTH(payload), reason FROM quarantine")
    assert row is not None
    kept, reason = row
    print(f"quarantine ({kind}): {len(payload)} bytes received, {kept} kept, reason {reason!r}")
    assert kept <= 4096, f"quarantine kept {kept} bytes of a {len(payload)}-byte payload"
    size, digest = db.one("SELECT payload_size, payload_sha256 FROM quarantine") or (0, "")
    assert size == len(payload) and digest == hashlib.sha256(payload).hexdigest()


# -- the ACL table (README "Topic ACL"): every row ----------------------------------------


def test_acl_table_every_identity(pki: Pki, broker: Broker) -> None:
    a, b = "kiosk-aaaaaaaaaaaaaaaa", "kiosk-bbbbbbbbbbbbbbbb"
    leaves = ("records", "status", "acks", "roster")
    may_publish = {
        a: {f"kiosk/{a}/records", f"kiosk/{a}/status"},
        "hq.ingest.2": {f"kiosk/{a}/acks", f"kiosk/{b}/acks"},
        "hq.roster": {f"kiosk/{a}/roster", f"kiosk/{b}/roster"},
        "hq.ops": set(),
    }
    may_subscribe = {
        a: {f"kiosk/{a}/acks", f"kiosk/{a}/roster"},
        "hq.ingest.2": {
            "$share/hq/kiosk/+/records", "kiosk/+/records", "kiosk/+/status",
            "$share/hq/kiosk/+/status",
            f"kiosk/{a}/records", f"kiosk/{b}/records", f"kiosk/{a}/status", f"kiosk/{b}/status",
        },
        "hq.roster": set(),
        "hq.ops": {"kiosk/+/status", f"kiosk/{a}/status", f"kiosk/{b}/status"},
    }  # fmt: skip
    subs = [f"kiosk/{d}/{leaf}" for d in (a, b) for leaf in leaves]
    subs += ["#", "kiosk/#", "kiosk/+/records", "kiosk/+/status", "kiosk/+/acks"]
    subs += ["$share/hq/kiosk/+/records", "$share/hq/kiosk/+/status", "$share/x/kiosk/#"]
    subs += [f"kiosk/{a}/#", "$CONTROL/#"]
    pki.client(b)
    for cn in may_publish:
        c = connect_client(broker, pki.client(cn))
        try:
            for topic in [f"kiosk/{d}/{leaf}" for d in (a, b) for leaf in leaves]:
                code = puback(c, topic, b"{}")
                assert (code in (0, 16)) == (topic in may_publish[cn]), (cn, "publish", topic, code)
            for topic in subs:
                answer = suback(c, topic)
                ok = answer.startswith("Granted")
                assert ok == (topic in may_subscribe[cn]), (cn, "subscribe", topic, answer)
        finally:
            close(c)
    # a CN the broker does not know (a kiosk not registered, or one revoked) may do nothing
    stranger = connect_client(broker, pki.client("someone.else"))
    try:
        assert puback(stranger, f"kiosk/{a}/records") == 135
        assert suback(stranger, "kiosk/+/status") == "Not authorized"
    finally:
        close(stranger)


# -- 5. forks and bogus links: stored, acked, the device marked compromised ----------------


def test_forks_and_bogus_links_are_stored_acked_and_flagged(pki: Pki, tmp_path: Path) -> None:
    """With A's stolen device key: the same seq under a new id, and a made-up prev_hash after
    a gap. HQ stores and acks both (signed evidence; a kiosk must not resend forever) and the
    report marks A compromised; the bogus link is 'unverified' until its predecessor arrives,
    then a fork."""
    from edge_hq.report import device_report

    a = SimKiosk(hq_box_key().public_key)
    chain = [a.record(kpm_id=f"K{i}") for i in range(1, 6)]  # seq 1..5
    clone = a.record(kpm_id="CLONE", seq=3, prev_hash=chain[1]["prev_hash"], advance=False)
    hidden = a.record(kpm_id="K6")  # seq 6: held back
    bogus = a.record(kpm_id="K7", prev_hash="ab" * 32)  # seq 7 names no real record
    with hq_world(pki, tmp_path, a) as (db, _broker, _worker, link):
        link.publish([canonical_json(r) for r in [*chain, clone, bogus]])
        wait_for(lambda: len(link.acked) == 7, 30, "acks for all 7")
        dev = device_report(db)[a.device_id]
        print(f"forks: before seq 6 arrives {dev}")
        assert (dev["forks"], dev["gaps"], dev["unverified_links"]) == ([3], [[6, 6]], [7])
        assert dev["compromised"] is True
        link.publish([canonical_json(hidden)])
        wait_for(lambda: len(link.acked) == 8, 30, "the ack for seq 6")
    dev = device_report(db)[a.device_id]
    print(f"forks: after seq 6 arrives {dev}")
    assert (dev["forks"], dev["gaps"], dev["unverified_links"]) == ([3, 7], [], [])
    seqs = {int(r[0]) for r in db.rows("SELECT seq FROM chain_issues")}
    assert {3, 7} <= seqs, seqs  # both logged at ingest for alerting


def test_ingest_without_hq_signing_key_refuses_to_start(tmp_path: Path) -> None:
    """No key, no unsigned acks: the worker stops at start with a message naming the file."""
    from edge_hq.config import BrokerConfig, DatabaseConfig, HqSettings, KeysConfig

    from edge.errors import DeviceMissing

    settings = HqSettings(
        broker=BrokerConfig(tls=False),
        database=DatabaseConfig(url=str(tmp_path / "hq.db")),
        keys=KeysConfig(dir=str(tmp_path / "no-keys")),
    )
    worker = IngestWorker(settings, open_database(settings.database.url))
    with pytest.raises(DeviceMissing, match=r"hq-signing\.key: no key file: HQ ingest signs"):
        worker.start()
