"""The publishing process SIGKILLed at 20 random points of a drain, restarted each time.

Runtime: about 45 s (20 process starts of `python -m tests.uplink_runner`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.store import Store
from tests.hq_sim import HqSim
from tests.support.helpers import wait_for
from tests.support.mqtt import REPO, Broker, Pki
from tests.uplink_support import Kiosk, make_kiosk

pytestmark = pytest.mark.slow  # 20 SIGKILLed uplink processes, ~45 s


@pytest.fixture
def hq(broker: Broker, pki: Pki) -> Iterator[HqSim]:
    sim = HqSim(broker, pki.client("hq.ingest")).start()
    wait_for(lambda: sim.connects > 0, 20, "HQ simulator to connect")
    try:
        yield sim
    finally:
        sim.stop()


def runner(kiosk: Kiosk, b: Broker, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "tests.uplink_runner",
        "--db",
        str(kiosk.db),
        "--device",
        kiosk.device_id,
        "--host",
        b.host,
        "--port",
        str(b.port),
        "--ca",
        str(kiosk.tls.ca_file),
        "--cert",
        str(kiosk.tls.cert_file),
        "--key",
        str(kiosk.tls.key_file),
        *extra,
    ]
    with log.open("ab") as f:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=f)


def test_kiosk_sigkilled_at_20_points(tmp_path: Path, broker: Broker, pki: Pki, hq: HqSim) -> None:
    n = 5000
    seed = int(os.environ.get("UPLINK_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    kiosk = make_kiosk(tmp_path, pki, n)
    log = tmp_path / "runner.log"
    # Kill points: when HQ holds a random share of the records (so every kill is mid-drain),
    # a few right after start (before or during connect) for the other kind of crash.
    points = sorted(rng.sample(range(50, n - 50), 16))
    early = [rng.uniform(0.05, 0.6) for _ in range(4)]
    kills = 0
    t0 = time.monotonic()
    for delay in early:
        p = runner(kiosk, broker, log)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        kills += 1
    for point in points:
        p = runner(kiosk, broker, log)
        try:
            wait_for(
                lambda point=point, p=p: hq.distinct() >= point or p.poll() is not None,
                120,
                f"HQ to hold {point} records (seed {seed})",
                interval=0.005,
            )
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(30)
        kills += 1
    p = runner(kiosk, broker, log, "--resend-after", "2")
    out, _ = p.communicate(timeout=240)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, f"final run did not drain (seed {seed}):\n{log.read_text()[-3000:]}"
    final = json.loads(out.decode().strip().splitlines()[-1])
    store = Store(kiosk.db)
    try:
        ids = {r[0] for r in store.conn.execute("SELECT id FROM records")}
        states = dict(store.conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
    finally:
        store.close()
    assert kills == 20
    assert states == {"acked": n}
    assert hq.ids() == ids and not hq.bad
    # The SIGKILLs left the last will: HQ saw the kiosk go offline between runs.
    assert "offline" in hq.states(kiosk.device_id)
    print(
        f"\nkiosk SIGKILL x20 (seed {seed}): {n} records in {elapsed:.1f}s,"
        f" {hq.duplicates()} redeliveries of already-received ids; final run {final['counters']}"
    )
