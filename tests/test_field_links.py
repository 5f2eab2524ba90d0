"""The uplink on emulated field links: `village-flaky` and `van-moving` with 2,000 records.

Real mosquitto, real TLS, the real `Uplink` over SQLite, through tests/link_emulator.py.
500 records wait in the outbox at start (a morning's backlog) and 1,500 more are appended
while the link flaps (~16 a second for 96 s, as a busy post would). Profile time is
compressed (`scale`): village-flaky x0.4 (36 s of 3G, 12 s blackouts), van-moving x0.6 (its
3 min cycle in 108 s: a 12 s blackout, a reset, a 6 s blackout in the run). Keepalive 5 s, so
the broker gives up on a silent kiosk after 7.5 s and a 12 s blackout must show `offline`.
About 2 x 2 min.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.field_support import Appender, FieldRig
from tests.link_emulator import PROFILES
from tests.support.helpers import wait_for
from tests.support.mqtt import Pki

pytestmark = pytest.mark.slow  # two emulated field links, ~2 min each

KEEPALIVE_S = 5
QUEUED = 500
APPENDED = 1500
APPEND_S = 96.0
LONG_DOWN_S = 1.5 * KEEPALIVE_S + 3.0  # blackouts at least this long must show offline
AFTER_S = 8.0  # an offline may land this long after a blackout (will on session takeover)


@pytest.mark.parametrize(("profile", "scale"), [("village-flaky", 0.4), ("van-moving", 0.6)])
def test_field_profile_delivers_everything(
    tmp_path: Path, pki: Pki, profile: str, scale: float
) -> None:
    rig = FieldRig(
        tmp_path,
        pki,
        PROFILES[profile],
        queued=QUEUED,
        scale=scale,
        keepalive_s=KEEPALIVE_S,
        inflight=100,
        connect_timeout_s=5.0,
        reconnect_min_s=0.2,
        reconnect_max_s=4.0,
        status_interval_s=5.0,
    )
    try:
        rig.start()
        app = Appender(rig, QUEUED + 1, APPENDED, APPENDED / APPEND_S)
        app.start()
        assert app.done.wait(APPEND_S + 120), "appending 1,500 records took far too long"

        def all_acked() -> bool:
            s = rig.up.outbox.stats()
            return s.pending == 0 and s.sent == 0 and s.acked == QUEUED + APPENDED

        wait_for(all_acked, 240, "every record acked by HQ")
        wait_for(lambda: rig.up.connected, 60, "the kiosk online at the end")
        wait_for(
            lambda: bool(rig.watch.states()) and rig.watch.states()[-1][1] == "online",
            30,
            "HQ seeing the kiosk online at the end",
        )
        end = rig.watch.states()[-1][0]
        kiosk = rig.kiosk_ids()
        downs = [(a, b) for a, b in rig.emu.down_windows() if a < end]
        statuses = rig.watch.states()
        changes = list(rig.conn.changes)
        dups = rig.hq.duplicates()
    finally:
        rig.close()

    # Every record delivered, byte for byte; duplicates only as the same id and the same bytes.
    assert len(kiosk) == QUEUED + APPENDED
    assert rig.hq.ids() == set(kiosk), "HQ is missing records (or has foreign ones)"
    assert all(rig.hq.variants[i] == {h} for i, h in kiosk.items()), "a delivery differed"
    assert rig.hq.bad == []
    print(f"{profile}: {len(kiosk)} records, {dups} redeliveries, downs={len(downs)}")

    def in_down(t: float, after: float) -> bool:
        return any(a <= t <= b + after for a, b in downs)

    # The kiosk dropped its link only when the link was really down (no flapping on 2G/3G).
    drops = [t for t, up in changes if not up][1:]  # [0] is "not yet connected" at start
    assert drops, "the kiosk never noticed a blackout or reset"
    assert all(in_down(t, 1.0) for t in drops), f"link dropped while up: {drops} vs {downs}"
    # HQ's view: offline only while (or just after) the link was down ...
    offline = [t for t, s in statuses if s == "offline"]
    assert all(in_down(t, AFTER_S) for t in offline), f"offline while up: {offline} vs {downs}"
    long_downs = [(a, b) for a, b in downs if b - a >= LONG_DOWN_S]
    resets = [a for a, b in downs if a == b]
    assert long_downs, "the schedule had no long blackout in the run"
    for a, b in long_downs:
        # ... and offline during every long blackout, which the kiosk also noticed.
        assert any(a <= t <= b for t in offline), f"no offline during blackout {a:.1f}-{b:.1f}"
        assert any(a <= t <= b for t in drops), f"kiosk missed blackout {a:.1f}-{b:.1f}"
    for a in resets:
        assert any(a <= t <= a + AFTER_S for t in offline), f"no offline after reset at {a:.1f}"
    for _a, b in [*long_downs, *((r, r) for r in resets)]:
        # Back online once the link returned.
        assert any(b < t <= b + 30 for t, s in statuses if s == "online"), f"not online after {b}"
    assert statuses[-1][1] == "online"


def test_window_above_broker_receive_maximum_is_capped(tmp_path: Path, pki: Pki) -> None:
    """mqtt.inflight 500 against mosquitto's receive maximum 100: capped, never dropped."""
    rig = FieldRig(
        tmp_path, pki, PROFILES["3g"], queued=1500, keepalive_s=KEEPALIVE_S, inflight=500
    )
    try:
        rig.start()
        wait_for(lambda: rig.up.counters["acked"] >= 1500, 120, "1,500 records acked")
        assert rig.up.window == 100
        assert rig.up.counters["link_lost"] == 0
        assert rig.up.counters["connects"] == 1
    finally:
        rig.close()
