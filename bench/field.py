"""The uplink on emulated field links (2G, 3G, flaky village, moving van) against a naive loop.

Run by hand (needs Debian's mosquitto; ~15 min with the defaults):
`python -m bench.field [--profiles 2g,3g,village-flaky,van-moving] [-n 1000]`.

Per profile, in one run, through tests/link_emulator.py (the real profile, time not scaled):
- naive: one paho client publishes a record's JSON at QoS 1 and waits for its PUBACK, then the
  next, for `--naive-s` seconds (at least 60 on the flaky profiles) from the start of the
  profile's schedule: records per second. The flaky profiles start 2 s before their first
  blackout (village-flaky: 3G 2 s, blackout 30 s, 3G; van-moving: 2G 2 s, blackout 20 s,
  2G 20 s, reset + 3G ...), so both contenders meet it;
- ours: `edge.uplink.Uplink` drains `-n` queued records from the start of the same schedule;
  time until the last PUBACK and the last HQ ack, records per second to HQ ack, and the ratio
  to the naive rate; bytes per record that crossed the emulated link up (TLS, MQTT, pings,
  status included) for both;
- blackout: the profile's link for 20 s, then a blackout (30 s on 3G as in village-flaky,
  20 s on 2G as in van-moving), with records arriving at 5 a second throughout: how long the
  kiosk takes to notice, how long the broker takes to publish the last will (HQ sees
  offline), and after the link returns how long until the kiosk is connected again and
  until the next PUBACK (delivery resumed); plus a reset (connections dropped) on the link.
The kiosk's MQTT settings are the ones proposed for the field (`FIELD_MQTT`).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.uplink import fill
from edge.uplink import service as uplink_service
from tests.field_support import Appender, FieldRig
from tests.link_emulator import FOREVER, G2, G3, PROFILES, LinkSpec, Phase, rotated
from tests.support.helpers import wait_for
from tests.support.mqtt import Pki, connect_client

# Proposed field defaults (see the report): notice a dead link in ~15 s while sending, ~22 s
# at the broker (1.5 x keepalive); fill a 3G link's bandwidth-delay product; come back fast.
FIELD_MQTT: dict[str, Any] = {
    "keepalive_s": 15,
    "inflight": 100,
    "connect_timeout_s": 10.0,
    "reconnect_min_s": 1.0,
    "reconnect_max_s": 60.0,
    "status_interval_s": 60.0,
}

START_AT = {"village-flaky": 88.0, "van-moving": 73.0}  # 2 s before the first blackout


def naive(rig: FieldRig, seconds: float) -> dict[str, float]:
    """Publish-and-wait through the emulator for `seconds`: records/s and link bytes/record."""
    with rig.store.lock:
        bodies = [
            str(b).encode()
            for (b,) in rig.store.conn.execute("SELECT body FROM records ORDER BY seq")
        ]
    c = connect_client(rig.broker, rig.kiosk.tls, port=rig.emu.port, timeout=60)
    topic = f"kiosk/{rig.kiosk.device_id}/records"
    up0 = rig.emu.stats.up_bytes
    t0 = time.monotonic()
    n = 0
    for body in bodies:
        info = c.publish(topic, body, qos=1)
        left = seconds - (time.monotonic() - t0)
        if left <= 0:
            break
        info.wait_for_publish(left)
        if not info.is_published():
            break
        n += 1
    elapsed = time.monotonic() - t0
    up = rig.emu.stats.up_bytes - up0
    c.disconnect()
    c.loop_stop()
    return {
        "records": n,
        "seconds": round(elapsed, 1),
        "records_per_s": round(n / elapsed, 2),
        "link_bytes_per_record": round(up / n, 1) if n else 0.0,
    }


def ours(rig: FieldRig, n: int, timeout: float) -> dict[str, float]:
    """Drain n queued records from the schedule's start: times to last PUBACK and HQ ack."""
    up0 = rig.emu.stats.up_bytes
    t0 = time.monotonic()
    rig.start()
    t_puback = None
    while True:
        c = rig.up.counters
        if t_puback is None and c["puback"] >= n:
            t_puback = time.monotonic() - t0
        if c["acked"] >= n:
            break
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{c['acked']} of {n} acked after {timeout:.0f} s")
        time.sleep(0.01)
    t_ack = time.monotonic() - t0
    up = rig.emu.stats.up_bytes - up0
    return {
        "records": n,
        "seconds_to_last_puback": round(t_puback or t_ack, 1),
        "seconds_to_last_hq_ack": round(t_ack, 1),
        "records_per_s_to_hq_ack": round(n / t_ack, 2),
        "link_bytes_per_record": round(up / n, 1),
    }


class Progress(threading.Thread):
    """PUBACK count over time (monotonic), to see when delivery resumed."""

    def __init__(self, rig: FieldRig) -> None:
        super().__init__(daemon=True)
        self.rig = rig
        self.samples: list[tuple[float, int]] = []
        self.stop_ev = threading.Event()

    def run(self) -> None:
        while not self.stop_ev.wait(0.02):
            self.samples.append((time.monotonic(), self.rig.up.counters["puback"]))


def outage(rig: FieldRig, link: LinkSpec, blackout_s: float, next_index: int) -> dict[str, Any]:
    """Link 20 s, blackout, link again (then a reset), with records arriving at 5/s."""
    rig.emu.set_phases([Phase(20.0, link), Phase(blackout_s, None), Phase(FOREVER, link)])
    prog = Progress(rig)
    prog.start()
    app = Appender(rig, next_index, int(5 * (20 + blackout_s + 25)), 5.0)
    app.start()
    t_b = rig.emu.stats.transitions[-1][0] + 20.0
    t_e = t_b + blackout_s
    wait_for(lambda: time.monotonic() > t_e + 25, 20 + blackout_s + 60, "outage run")
    # then a reset: the modem changes cell; every connection is dropped at once
    rig.emu.set_phases([Phase(FOREVER, link, reset=True)])
    t_r = rig.emu.stats.transitions[-1][0]
    wait_for(lambda: rig.up.connected and time.monotonic() > t_r + 5, 120, "back after reset")
    app.done.wait(120)
    prog.stop_ev.set()
    prog.join(5)

    def first(
        seq: list[tuple[float, Any]], after: float, pred: Any, until: float = FOREVER
    ) -> float | None:
        hits = (round(t - after, 2) for t, v in seq if after <= t <= until and pred(v))
        return next(hits, None)

    before = max((c for t, c in prog.samples if t <= t_e), default=0)
    return {
        "link": link.name,
        "blackout_s": blackout_s,
        "kiosk_noticed_after_s": first(rig.conn.changes, t_b, lambda v: not v),
        # None: the broker had not given up before the link returned (blackout < 1.5 x keepalive)
        "hq_saw_offline_after_s": first(
            rig.watch.states(), t_b, lambda v: v == "offline", until=t_e + 5
        ),
        "reconnected_after_link_returned_s": first(rig.conn.changes, t_e, bool),
        "delivery_resumed_after_link_returned_s": first(prog.samples, t_e, lambda v: v > before),
        "hq_saw_online_after_link_returned_s": first(
            rig.watch.states(), t_e, lambda v: v == "online"
        ),
        "reset_reconnected_after_s": first(rig.conn.changes, t_r, bool),
    }


def run_profile(
    root: Path, pki: Pki, profile: str, n: int, naive_s: float, evidence: bool
) -> dict[str, Any]:
    # The flaky profiles start 2 s before their first blackout, so both contenders meet it.
    phases = rotated(PROFILES[profile], START_AT.get(profile, 0.0))
    rig = FieldRig(
        root / f"{profile}-{evidence}",
        pki,
        phases,
        queued=0 if evidence else n,
        resend_after_s=120.0,
        **FIELD_MQTT,
    )
    try:
        if evidence:  # a real 112x112 JPEG crop and embedding, sealed, as bench.uplink makes
            fill(rig.kiosk.db, rig.kiosk.key, n, True)
        base = naive(rig, naive_s if profile in ("2g", "3g") else max(naive_s, 60.0))
        rig.emu.set_phases(phases)  # ours starts at the schedule's start too
        mine = ours(rig, n, timeout=1800)
        out: dict[str, Any] = {
            "profile": profile,
            "evidence": evidence,
            "naive": base,
            "ours": mine,
            "ratio_vs_naive": round(mine["records_per_s_to_hq_ack"] / base["records_per_s"], 1)
            if base["records_per_s"]
            else None,
        }
        if not evidence and profile in ("village-flaky", "van-moving"):
            link, blackout = (G3, 30.0) if profile == "village-flaky" else (G2, 20.0)
            out["outage"] = outage(rig, link, blackout, n + 1)
        return out
    finally:
        rig.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profiles", default="2g,3g,village-flaky,van-moving")
    p.add_argument("-n", type=int, default=1000, help="queued records per profile")
    p.add_argument("--naive-s", type=float, default=45.0, help="seconds of naive loop")
    p.add_argument("--evidence-n", type=int, default=100, help="records with evidence (2g, 3g)")
    p.add_argument("--dir", type=Path, default=None)
    a = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        root = Path(tmp)
        pki = Pki(root / "pki")
        for prof in a.profiles.split(","):
            results.append(run_profile(root, pki, prof, a.n, a.naive_s, False))
            print(json.dumps(results[-1]), flush=True)
            if prof in ("2g", "3g") and a.evidence_n:
                results.append(run_profile(root, pki, prof, a.evidence_n, a.naive_s, True))
                print(json.dumps(results[-1]), flush=True)
    print(
        json.dumps(
            {
                "machine": platform.machine(),
                "python": platform.python_version(),
                "mqtt": FIELD_MQTT,
                "inflight_bytes": uplink_service.INFLIGHT_BYTES,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
