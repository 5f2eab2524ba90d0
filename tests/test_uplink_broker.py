"""The uplink against Debian's mosquitto with the shipped config: drain, broker SIGKILLs, downlink.

Runtime: about 40 s on a 2-core machine (the 5,000-record / 5-kill test is most of it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from bansos_contract.topics import Topics
from edge.housekeeping import Chore, Housekeeping, purge_acked
from edge.roster_inbox import RosterInbox
from edge.store import Store
from edge.uplink import Uplink
from tests.hq_sim import HqSim
from tests.roster_fixtures import MODEL_SHA, OTHER_MODEL_SHA, fill_store, signed_bundle
from tests.support.helpers import wait_for
from tests.support.hq import HQ_SIGNING_KEY, HQ_VERIFY_KEY
from tests.support.mqtt import Broker, Pki, connect_client
from tests.uplink_support import Kiosk, make_kiosk, mqtt_config, outbox_config

log = logging.getLogger(__name__)


def retained(b: Broker, pki: Pki, topic: str, timeout: float = 10.0) -> dict[str, Any] | None:
    """The retained message on `topic` as HQ sees it (None if there is none)."""
    c = connect_client(b, pki.client("hq.ops"))
    got: list[bytes] = []
    done = threading.Event()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        got.append(bytes(msg.payload))
        done.set()

    c.on_message = on_message
    c.subscribe(topic, qos=1)
    done.wait(timeout if topic else 0)
    c.disconnect()
    c.loop_stop()
    return json.loads(got[0]) if got else None


@pytest.fixture
def hq(broker: Broker, pki: Pki) -> Iterator[HqSim]:
    sim = HqSim(broker, pki.client("hq.ingest")).start()
    wait_for(lambda: sim.connects > 0, 20, "HQ simulator to connect")
    try:
        yield sim
    finally:
        sim.stop()


def start_uplink(
    kiosk: Kiosk,
    b: Broker,
    hq_key: SigningKey | None = None,
    extra: dict[str, Any] | None = None,
    **outbox: Any,
) -> tuple[Store, Uplink]:
    store = Store(kiosk.db)
    verify_key = hq_key.verify_key if hq_key else HQ_VERIFY_KEY
    up = Uplink(
        store,
        mqtt_config(b, kiosk.tls),
        outbox_config(**outbox),
        kiosk.device_id,
        verify_key,
        MODEL_SHA,
        (lambda: dict(extra)) if extra is not None else None,
        roster=RosterInbox(store, verify_key, MODEL_SHA, kiosk.device_id),  # as the daemon does
    )
    up.start()
    return store, up


def test_drain_status_and_offline(tmp_path: Path, broker: Broker, pki: Pki, hq: HqSim) -> None:
    kiosk = make_kiosk(tmp_path, pki, 400)
    extra = {"gps": {"mode": 3, "lat": -7.1}, "model": MODEL_SHA[:12], "clock": "gps"}
    store, up = start_uplink(kiosk, broker, extra=extra)
    try:
        wait_for(lambda: up.outbox.stats().depth == 0, 60, "the outbox to drain")
        wait_for(lambda: up.stats()["counters"]["acked"] == 400, 10, "acks counted")
        stats = up.stats()
        assert up.connected and stats["acked"] == 400 and stats["last_sync"] is not None
        assert hq.distinct() == 400 and not hq.bad
        all_ids = {r[0] for r in store.conn.execute("SELECT id FROM records")}
        assert hq.ids() == all_ids
        topic = Topics.for_device("kiosk", kiosk.device_id).status

        def drained_status() -> bool:
            s = retained(broker, pki, topic)
            return s is not None and s["queue"]["depth"] == 0 and s["last_sync"] is not None

        wait_for(drained_status, 30, "a retained status with an empty queue")
        s = retained(broker, pki, topic)
        assert s is not None
        assert s["state"] == "online" and s["gps"] == extra["gps"] and s["clock"] == "gps"
        assert s["accepting"] is True and s["roster"]["bundle_id"] is None
        # SIGTERM path of the daemon: offline status first (a clean DISCONNECT sends no will).
        assert up.publish_offline(10)
        s = retained(broker, pki, topic)
        assert s is not None and s["state"] == "offline"
        assert not up.connected
    finally:
        assert up.stop(20)
        store.close()


@pytest.mark.slow
def test_broker_sigkilled_five_times(tmp_path: Path, broker: Broker, pki: Pki, hq: HqSim) -> None:
    n = 5000
    kiosk = make_kiosk(tmp_path, pki, n)
    store, up = start_uplink(kiosk, broker)
    kills = 0
    t0 = time.monotonic()
    try:
        for k in range(1, 6):
            # Kill mid-drain: as soon as HQ holds another sixth of the records.
            wait_for(lambda k=k: hq.distinct() >= k * n // 6, 120, f"progress before kill {k}")
            broker.kill9()
            kills += 1
            broker.start()
        wait_for(lambda: up.outbox.stats().depth == 0, 240, "every record acked")
        counters = up.stats()["counters"]
    finally:
        up.stop(20)
        store.close()
    elapsed = time.monotonic() - t0
    ids = {r[0] for r in Store(kiosk.db).conn.execute("SELECT id FROM records")}
    assert kills == 5 and broker.starts == 6
    assert hq.ids() == ids, "HQ is missing records"
    assert not hq.bad
    print(
        f"\nbroker SIGKILL x5: {n} records in {elapsed:.1f}s, {hq.duplicates()} redeliveries"
        f" of already-received ids, {hq.connects} HQ connects, uplink {counters}"
    )


@pytest.mark.slow
def test_roster_downlink_verified_before_import(
    tmp_path: Path, broker: Broker, pki: Pki, hq: HqSim
) -> None:
    hq_key = HQ_SIGNING_KEY  # signs rosters here and the simulated HQ's acks
    kiosk = make_kiosk(tmp_path, pki, 5)
    store, up = start_uplink(kiosk, broker, hq_key=hq_key)
    topics = Topics.for_device("kiosk", kiosk.device_id)
    pub = connect_client(broker, pki.client("hq.roster"))  # may publish rosters only
    acker = connect_client(broker, pki.client("hq.ingest.2"))  # may publish acks
    try:
        wait_for(lambda: up.connected, 30, "uplink connected")

        def send(payload: bytes) -> None:
            pub.publish(topics.roster, payload, qos=1, retain=True).wait_for_publish(10)

        refusals = [
            ({k: v for k, v in signed_bundle(hq_key).items() if k != "sig"}, "unsigned"),
            (signed_bundle(SigningKey.generate(), bundle_id="b-other"), "HQ key"),
            (signed_bundle(hq_key, model=OTHER_MODEL_SHA, bundle_id="b-model"), "embedder"),
            (signed_bundle(hq_key, device_id="kiosk-ffffffffffffffff", bundle_id="b-dev"), "not"),
        ]
        for i, (obj, why) in enumerate(refusals, start=1):
            send(json.dumps(obj).encode())
            wait_for(lambda i=i: up.stats()["counters"]["roster_refused"] == i, 20, why)
            assert why in up.stats()["roster"]["last_refused"]["reason"]
        for junk in (b"\xff\x00garbage", b"{", b"[]", b"{}", json.dumps({"v": 1}).encode()):
            send(junk)
        wait_for(lambda: up.stats()["counters"]["roster_refused"] == 9, 20, "junk refused")
        assert store.conn.execute("SELECT COUNT(*) FROM roster").fetchone()[0] == 0
        events = [e for e in store.events(50) if e["kind"] == "roster_refused"]
        assert len(events) == 9
        wait_for(
            lambda: (
                (retained(broker, pki, topics.status) or {}).get("roster", {}).get("last_refused")
                is not None
            ),
            20,
            "the refusal in the status",
        )
        # Malformed acks on the ack topic: counted and ignored, the link stays up.
        for junk in (b"nope", b'{"ids": ["x"]}', b'{"ids": 5}', b"\x00" * 10):
            acker.publish(topics.acks, junk, qos=1).wait_for_publish(10)
        wait_for(lambda: up.stats()["counters"]["ack_refused"] == 4, 20, "bad acks refused")
        # A good bundle (targeted at this kiosk) is imported and shown.
        send(json.dumps(signed_bundle(hq_key, n=4, device_id=kiosk.device_id)).encode())
        wait_for(lambda: up.stats()["counters"]["roster_imported"] == 1, 20, "roster import")
        assert store.conn.execute("SELECT COUNT(*) FROM roster").fetchone()[0] == 4
        wait_for(
            lambda: (
                (retained(broker, pki, topics.status) or {}).get("roster", {}).get("bundle_id")
                == "b-2026-11-001"
            ),
            20,
            "the bundle id in the status",
        )
        # The records still drain: nothing above broke the client.
        wait_for(lambda: up.outbox.stats().depth == 0, 30, "drain after junk")
        assert up.alive and up.stats()["counters"]["loop_errors"] == 0
        # A reconnect redelivers the retained bundle: not imported twice.
        broker.kill9()
        broker.start()
        wait_for(lambda: up.stats()["counters"]["connects"] >= 2, 30, "reconnect")
        time.sleep(1.0)
        assert up.stats()["counters"]["roster_imported"] == 1
    finally:
        for c in (pub, acker):
            c.disconnect()
            c.loop_stop()
        up.stop(20)
        store.close()


def test_new_records_woken_and_acked_records_purged(
    tmp_path: Path, broker: Broker, pki: Pki, hq: HqSim
) -> None:
    """The daemon's flow: records appended while running go out; acked ones are purged
    (by the daemon's housekeeping thread, next to the uplink)."""
    kiosk = make_kiosk(tmp_path, pki, 20)
    store, up = start_uplink(kiosk, broker)
    chores = Housekeeping([Chore("purge", lambda: 1.0, lambda: purge_acked(store, 0.0))]).start()
    try:
        wait_for(lambda: hq.distinct() == 20, 30, "the first 20 records")
        later = fill_store(store, kiosk.key, 30, start=21)  # other KPMs
        up.wake()
        wait_for(lambda: hq.ids() >= {r["id"] for r in later}, 30, "records appended later")
        # Retention 0 days: every acked record goes at the next purge, the chain stays anchored.
        wait_for(lambda: store.record_count() == 0, 30, "purge of acked records")
        assert store.chain_anchor()[0] == 50
        assert up.outbox.stats().depth == 0 and hq.distinct() == 50
    finally:
        chores.stop()
        assert up.stop(20)
        store.close()
    status = retained(broker, pki, Topics.for_device("kiosk", kiosk.device_id).status)
    assert status is not None and status["state"] == "offline"  # stop() says goodbye too


def test_unreachable_broker_and_bad_tls_files_do_not_crash(tmp_path: Path, pki: Pki) -> None:
    """No broker, then a missing CA file: the uplink keeps trying (with backoff), never dies."""
    from tests.support.mqtt import free_port

    kiosk = make_kiosk(tmp_path, pki, 3)
    nowhere = Broker(tmp_path / "never-started", pki, port=free_port())
    for cfg in (
        mqtt_config(nowhere, kiosk.tls, reconnect_min_s=0.05, reconnect_max_s=0.2),
        mqtt_config(
            nowhere,
            kiosk.tls,
            ca_file=str(tmp_path / "missing-ca.crt"),
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        ),
    ):
        store = Store(kiosk.db)
        up = Uplink(store, cfg, outbox_config(), kiosk.device_id, HQ_VERIFY_KEY, MODEL_SHA)
        up.start()
        try:
            wait_for(lambda up=up: up.stats()["counters"]["connect_failures"] >= 3, 30, "retries")
            assert up.alive and not up.connected
            assert up.stats()["counters"]["loop_errors"] == 0
            assert up.outbox.stats().pending == 3
            # SIGTERM while offline: nothing to publish (the will stands), the thread ends.
            assert up.publish_offline(5)
            wait_for(lambda up=up: not up.alive, 10, "the uplink thread to end")
        finally:
            t0 = time.monotonic()
            assert up.stop(20)
            assert time.monotonic() - t0 < 10
            store.close()
