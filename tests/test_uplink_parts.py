"""The uplink session's helpers on their own: reconnect state, counters, the status reporter's
timing, the inbound router's subscriptions (a real SQLite outbox; no broker)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from bansos_contract.topics import Topics
from edge.store import Store
from edge.uplink.counters import Counters
from edge.uplink.inbound import Inbound
from edge.uplink.outbox import Outbox
from edge.uplink.pump import OutboxPump
from edge.uplink.reconnect import Reconnect
from edge.uplink.reporter import STATUS_MIN_GAP_S, StatusReporter
from edge.uplink.window import InFlight


def test_reconnect_backs_off_and_only_a_stable_link_resets_it() -> None:
    r = Reconnect(1.0, 30.0, random.Random(3), stable_s=30.0)
    delays = [r.schedule(100.0) for _ in range(6)]
    assert r.attempt == 6 and all(
        0.0 <= d <= c for d, c in zip(delays, [1, 2, 4, 8, 16, 30], strict=True)
    )
    assert r.wait_s(100.0) == r.next_at - 100.0 and r.wait_s(r.next_at + 1) < 0
    r.up(200.0)
    r.lost(210.0)  # up 10 s: a flapping link keeps its backoff
    assert r.attempt == 6
    r.up(300.0)
    r.lost(330.0)  # held 30 s: a fresh start
    assert r.attempt == 0
    r.dialled(50.0, 5.0)
    assert not r.connack_overdue(55.0) and r.connack_overdue(55.1)


def test_counters_total_and_copy() -> None:
    c = Counters()
    assert c.add("acked", 3) == 3 and c.add("acked") == 4 and c["acked"] == 4
    snap = c.snapshot()
    c.add("acked")
    assert snap["acked"] == 4 and c["acked"] == 5 and set(snap) >= {"published", "loop_errors"}


def test_status_is_due_on_change_and_on_interval_never_faster_than_the_gap(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "edge.db")
    try:
        extra = {"gps": "fix_3d"}
        rep = StatusReporter("kiosk-1", Outbox(store, 100, 1 << 20), Counters(), None,
                             lambda: dict(extra), interval_s=60.0)  # fmt: skip
        first = rep.next_status(1000.0)
        assert first is not None and json.loads(first)["state"] == "online"
        assert (
            json.loads(first)["gps"] == "fix_3d"
            and json.loads(first)["roster"]["bundle_id"] is None
        )
        rep.sent(1000.0)
        assert rep.next_status(1000.0 + STATUS_MIN_GAP_S / 2) is None  # the gap
        assert rep.next_status(1030.0) is None  # nothing that matters changed
        assert rep.next_status(1061.0) is not None  # the interval
        rep.sent(1061.0)
        rep.reset()  # a new connection: "online" at once
        assert rep.next_status(1062.5) is not None
        assert json.loads(rep.offline()) == {"v": 1, "state": "offline", "device_id": "kiosk-1"}
        stats = rep.stats(connected=True, in_flight=2)
        assert (stats["connected"], stats["in_flight"], stats["counters"]["roster_imported"]) == (
            True, 2, 0,
        )  # fmt: skip
    finally:
        store.close()


def test_inbound_subscribes_to_the_roster_only_with_a_handler(tmp_path: Path) -> None:
    store = Store(tmp_path / "edge.db")
    try:
        topics = Topics.for_device("kiosk", "kiosk-1")
        pump = OutboxPump(Outbox(store, 100, 1 << 20), 60.0, 0.0, Counters().add)
        inbound = Inbound(topics, "kiosk-1", None, pump, InFlight(10, 1 << 20), Counters(), None)
        assert inbound.subscriptions() == [topics.acks]
    finally:
        store.close()
