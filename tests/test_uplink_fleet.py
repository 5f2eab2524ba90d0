"""A fleet that loses the broker together does not come back together (backoff + full jitter).

Twenty kiosks (twenty Uplinks in this process, each with its own certificate) are online
when the broker is SIGKILLed; it stays down for 4 s. Each kiosk's reconnect attempts grow
exponentially (few attempts during the outage) and the reconnections spread out in time.
Runtime: about 15 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edge.keys import device_id_for
from edge.store import Store
from edge.uplink import Uplink
from tests.roster_fixtures import MODEL_SHA
from tests.support.helpers import wait_for
from tests.support.hq import HQ_VERIFY_KEY
from tests.support.mqtt import Broker, Pki
from tests.uplink_support import mqtt_config, outbox_config

FLEET = 20
OUTAGE_S = 4.0


@pytest.mark.slow
def test_fleet_reconnects_spread_out(tmp_path: Path, broker: Broker, pki: Pki) -> None:
    ups: list[Uplink] = []
    stores: list[Store] = []
    try:
        for i in range(FLEET):
            device_id = device_id_for(SigningKey.generate().verify_key)
            store = Store(tmp_path / f"k{i}.db")
            cfg = mqtt_config(
                broker, pki.client(device_id), reconnect_min_s=0.5, reconnect_max_s=8.0
            )
            up = Uplink(store, cfg, outbox_config(), device_id, HQ_VERIFY_KEY, MODEL_SHA)
            up.start()
            ups.append(up)
            stores.append(store)
        wait_for(lambda: all(u.connected for u in ups), 60, "the fleet online")
        broker.kill9()
        wait_for(lambda: not any(u.connected for u in ups), 30, "the fleet to notice")
        time.sleep(OUTAGE_S)
        attempts = [u.stats()["counters"]["connect_failures"] for u in ups]
        broker.start()
        back: dict[int, float] = {}

        def all_back() -> bool:
            for i, u in enumerate(ups):
                if i not in back and u.connected:
                    back[i] = time.monotonic()
            return len(back) == FLEET

        wait_for(all_back, 90, "the fleet back online", interval=0.01)
    finally:
        for u in ups:
            u.stop(20)
        for s in stores:
            s.close()
    # Exponential: 0.5, 1, 2, 4 s ceilings fit about 4 attempts into the outage; a fixed
    # 0.5 s retry would make 8+, a tight loop thousands.
    assert max(attempts) <= 7, attempts
    assert sum(attempts) / FLEET <= 6.0, attempts
    spread = max(back.values()) - min(back.values())
    print(
        f"\nfleet of {FLEET}: attempts during {OUTAGE_S:.0f}s outage {attempts}; "
        f"reconnects spread over {spread:.2f}s"
    )
    # Full jitter over a ceiling of several seconds: not one burst.
    assert spread >= 1.0, spread
