"""HQ ingest throughput: records per second checked (signature, chain) and stored.

Run by hand from the repo root:  .venv/bin/python -m bench.hq [--records 5000] [--no-pg]

Baseline (measured in the same run): the pure checks alone (parse + Ed25519 verify), the
ceiling no worker can beat. Then, each as records/s and as a ratio to that baseline:
  store-only   store_batch() in batches of 200, no MQTT (SQLite, PostgreSQL)
  publish-only the kiosks' QoS 1 publishing through mosquitto with no HQ: the MQTT path's
               ceiling on this machine, which end-to-end cannot beat either.
  end-to-end   kiosks publish through a real mosquitto (TLS), 1 or 2 `edge hq ingest`
               processes on a shared subscription, timed from the first publish to the
               last HQ ack (kiosks run in the bench process, so on 2 cores they compete).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from edge_hq.checks import check_message
from edge_hq.db import open_database
from edge_hq.registry import KeyCache, add_device
from edge_hq.store import Incoming, store_batch

from edge.records import canonical_json
from tests.support.helpers import write_toml
from tests.support.hq import PgServer, SimKiosk, hq_box_key, hq_key_dir
from tests.support.mqtt import Pki
from tests.test_hq_ingest import WORKER_CNS, KioskLink, hq_broker

REPO = Path(__file__).resolve().parents[1]


def make_records(n: int, kiosks: int) -> tuple[list[SimKiosk], list[tuple[SimKiosk, bytes]]]:
    box = hq_box_key()
    fleet = [SimKiosk(box.public_key) for _ in range(kiosks)]
    out = [(k, canonical_json(k.record(kpm_id=f"K{i}"))) for i in range(n // kiosks) for k in fleet]
    return fleet, out


def bench_checks(fleet: list[SimKiosk], msgs: list[tuple[SimKiosk, bytes]]) -> float:
    keys = {k.device_id: k.key.verify_key for k in fleet}
    t = time.perf_counter()
    for k, payload in msgs:
        check_message(payload, k.device_id, keys.get)
    return len(msgs) / (time.perf_counter() - t)


def bench_store(url: str, fleet: list[SimKiosk], msgs: list[tuple[SimKiosk, bytes]]) -> float:
    db = open_database(url)
    for k in fleet:
        add_device(db, k.device_id, k.public_key)
    keys = KeyCache(db)
    t = time.perf_counter()
    for i in range(0, len(msgs), 200):
        batch = [
            Incoming(
                f"kiosk/{k.device_id}/records", k.device_id, p, check_message(p, k.device_id, keys)
            )
            for k, p in msgs[i : i + 200]
        ]
        store_batch(db, batch)
    rate = len(msgs) / (time.perf_counter() - t)
    db.close()
    return rate


WORKER_CODE = (
    "import sys; from edge.cli import cli, main; from edge_hq.cli import hq_group\n"
    "'hq' in cli.commands or cli.add_command(hq_group)\nsys.exit(main(sys.argv[1:]))"
)


def start_worker(toml: Path) -> tuple[subprocess.Popen[str], threading.Event]:
    """`edge hq ingest` in its own process (its own GIL); the event is set once subscribed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_CODE, "-v", "hq", "ingest", "--hq-config", str(toml)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    ready = threading.Event()

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "subscribed to" in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    return proc, ready


def bench_e2e(
    url: str,
    workers: int,
    fleet: list[SimKiosk],
    msgs: list[tuple[SimKiosk, bytes]],
    pki: Pki,
    root: Path,
) -> float:
    db = open_database(url)
    for k in fleet:
        add_device(db, k.device_id, k.public_key)
    broker = hq_broker(root, pki)
    broker.start()
    procs = []
    links: list[KioskLink] = []
    try:
        for cn in WORKER_CNS[:workers]:
            tls = pki.client(cn)
            toml = write_toml(
                root / f"{cn}.toml",
                {
                    "broker": {
                        "host": broker.host, "port": broker.port, "ca_file": str(tls.ca_file),
                        "cert_file": str(tls.cert_file), "key_file": str(tls.key_file), "client_id": cn,
                    },
                    "database": {"url": url},
                    "keys": {"dir": str(hq_key_dir())},  # acks are signed with HQ's key
                },
            )  # fmt: skip
            procs.append(start_worker(toml))
        for proc, ready in procs:
            if not ready.wait(60) or proc.poll() is not None:
                raise RuntimeError("ingest worker did not subscribe")
        links = [KioskLink(broker, pki, k, None) for k in fleet]
        by_kiosk: dict[str, list[bytes]] = {k.device_id: [] for k in fleet}
        for k, p in msgs:
            by_kiosk[k.device_id].append(p)
        t = time.perf_counter()
        threads = [
            threading.Thread(target=link.publish, args=(by_kiosk[k.device_id],))
            for link, k in zip(links, fleet, strict=True)
        ]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 600
        while sum(len(x.acked) for x in links) < len(msgs):
            if time.monotonic() > deadline:
                raise RuntimeError("timed out waiting for acks")
            time.sleep(0.01)
        rate = len(msgs) / (time.perf_counter() - t)
        for th in threads:
            th.join()
    finally:
        for proc, _ready in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ready in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for link in links:
            link.close()
        broker.kill9()
        db.close()
    return rate


def bench_publish_only(
    fleet: list[SimKiosk], msgs: list[tuple[SimKiosk, bytes]], pki: Pki, root: Path
) -> float:
    """The MQTT path's own ceiling here: kiosks publish QoS 1 to the broker, no HQ at all."""
    broker = hq_broker(root, pki)
    broker.start()
    links = [KioskLink(broker, pki, k, None) for k in fleet]
    try:
        by_kiosk: dict[str, list[bytes]] = {k.device_id: [] for k in fleet}
        for k, p in msgs:
            by_kiosk[k.device_id].append(p)
        t = time.perf_counter()
        threads = [
            threading.Thread(target=link.publish, args=(by_kiosk[k.device_id],))
            for link, k in zip(links, fleet, strict=True)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return len(msgs) / (time.perf_counter() - t)
    finally:
        for link in links:
            link.close()
        broker.kill9()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--kiosks", type=int, default=10)
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = ap.parse_args()
    fleet, msgs = make_records(args.records, args.kiosks)
    results: list[tuple[str, float]] = []
    base = bench_checks(fleet, msgs)
    print(f"baseline: pure checks (parse + Ed25519 verify): {base:,.0f} records/s")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-hq-")))
        pki = Pki(tmp / "pki")
        pg: PgServer | None = None
        if not args.no_pg:
            pg = PgServer().start()
            stack.callback(pg.stop)
        results.append(
            ("publish-only (no HQ)", bench_publish_only(fleet, msgs, pki, tmp / "broker-pub"))
        )
        urls: dict[str, Any] = {"sqlite": lambda name: str(tmp / f"{name}.db")}
        if pg is not None:
            urls["postgres"] = lambda _name: pg.new_database()
        for backend, make_url in urls.items():
            results.append((f"store-only {backend}", bench_store(make_url("s"), fleet, msgs)))
            for n in (1, 2):
                # fresh kiosks so the chains and ids are new for each run
                f2, m2 = make_records(args.records, args.kiosks)
                rate = bench_e2e(make_url(f"e{n}"), n, f2, m2, pki, tmp / f"broker-{backend}-{n}")
                results.append((f"end-to-end {backend}, {n} worker{'s' if n > 1 else ''}", rate))
    print(f"{'case':<34} {'records/s':>10} {'x baseline':>10}")
    for name, rate in results:
        print(f"{name:<34} {rate:>10,.0f} {rate / base:>10.3f}")
    by = dict(results)
    for backend in ("sqlite", "postgres"):
        one, two = (
            by.get(f"end-to-end {backend}, 1 worker"),
            by.get(f"end-to-end {backend}, 2 workers"),
        )
        if one and two:
            print(f"two workers vs one ({backend}): x{two / one:.2f}")


if __name__ == "__main__":
    main()
