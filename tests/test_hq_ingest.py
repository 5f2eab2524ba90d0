"""HQ ingest against a real mosquitto (TLS, ACL) with two workers on a shared subscription.

The fleet test: 10,000 records from 20 simulated kiosks, with re-sent duplicates, a record
tampered in transit, a deleted record (gap), a forked chain and an unregistered kiosk.
Every ack a kiosk receives is checked against the database at that moment (ack after
commit). Runs on SQLite and on a real PostgreSQL. Also: no ack while the database is
down and redelivery after; `edge hq ingest` SIGKILLed mid-stream and restarted.
Runtime about 70 s on a loaded 2-core machine (the two fleet runs are 20-30 s each).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from edge_hq.checks import BAD_SIGNATURE, UNKNOWN_DEVICE
from edge_hq.config import BrokerConfig, DatabaseConfig, HqSettings, IngestConfig, KeysConfig
from edge_hq.db import is_postgres, open_database
from edge_hq.ingest import IngestWorker
from edge_hq.registry import add_device
from edge_hq.report import build_report

from edge.records import canonical_json
from tests.support.helpers import wait_for
from tests.support.hq import SimKiosk, hq_box_key, hq_key_dir
from tests.support.mqtt import HQ_IDENTITY, Broker, Pki, connect_client

WORKER_CNS = (HQ_IDENTITY, "hq.ingest-2")
REPO_ROOT = Path(__file__).resolve().parents[1]


def hq_broker(root: Path, pki: Pki) -> Broker:
    """The shipped ACL; both workers' CNs are ingest identities in it (tests/support/mqtt.py).

    The broker makes the certificate CN the client id, so two workers need two CNs.
    """
    return Broker(root, pki)


def settings_for(pki: Pki, broker: Broker, cn: str, url: str, batch_max: int = 200) -> HqSettings:
    tls = pki.client(cn)
    return HqSettings(
        broker=BrokerConfig(
            host=broker.host, port=broker.port, tls=True, ca_file=str(tls.ca_file),
            cert_file=str(tls.cert_file), key_file=str(tls.key_file), client_id=cn,
            share_group="hq", session_expiry_s=600,
        ),
        database=DatabaseConfig(url=url),
        keys=KeysConfig(dir=str(hq_key_dir())),
        ingest=IngestConfig(batch_max=batch_max, batch_wait_s=0.02),
    )  # fmt: skip


class StoredProbe:
    """Answers 'is this id committed right now?' from a connection of its own (per thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = threading.local()

    def stored(self, ids: list[str]) -> set[str]:
        conn = getattr(self.local, "conn", None)
        marks = ",".join("?" * len(ids))
        if is_postgres(self.url):
            import psycopg

            if conn is None:
                conn = self.local.conn = psycopg.connect(self.url, autocommit=True)
            sql = f"SELECT id FROM records WHERE id IN ({marks.replace('?', '%s')})"
        else:
            if conn is None:
                conn = self.local.conn = sqlite3.connect(self.url, check_same_thread=False)
            sql = f"SELECT id FROM records WHERE id IN ({marks})"
        return {r[0] for r in conn.execute(sql, ids).fetchall()}


class KioskLink:
    """A simulated kiosk's MQTT side: its own cert (CN = device id), publishes, collects acks."""

    def __init__(
        self, broker: Broker, pki: Pki, kiosk: SimKiosk, probe: StoredProbe | None
    ) -> None:
        import json

        self.acked: set[str] = set()
        self.ack_before_commit: list[str] = []
        self.lock = threading.Lock()
        self.client = connect_client(broker, pki.client(kiosk.device_id))
        topic = f"kiosk/{kiosk.device_id}/acks"

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            ids = json.loads(msg.payload)["ids"]
            missing = set(ids) - probe.stored(ids) if probe is not None else set()
            with self.lock:
                self.ack_before_commit.extend(missing)
                self.acked.update(ids)

        self.client.on_message = on_message
        self.client.subscribe(topic, qos=1)
        self.topic = f"kiosk/{kiosk.device_id}/records"

    def publish(self, payloads: list[bytes]) -> None:
        infos = [self.client.publish(self.topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(120)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def build_fleet(n_kiosks: int, per_kiosk: int, box: Any) -> dict[str, Any]:
    """Records and the faults to inject; returns what each should end as."""
    rnd = random.Random(42)
    kiosks = [SimKiosk(box.public_key) for _ in range(n_kiosks)]
    chains = {
        k.device_id: [
            k.record(kpm_id=f"KPM-{i:02d}-{j:04d}", decision="match" if j % 10 else "no_match",
                     geofence="outside" if j % 50 == 0 else "inside")
            for j in range(1, per_kiosk + 1)
        ]
        for i, k in enumerate(kiosks)
    }  # fmt: skip
    tamper_k, gap_k, fork_k = kiosks[0], kiosks[1], kiosks[2]
    tampered = dict(chains[tamper_k.device_id][99], kpm_id="KPM-STOLEN")
    deleted = chains[gap_k.device_id][249]  # seq 250 never arrives
    fork_seq = 300
    forked = fork_k.record(
        kpm_id="KPM-CLONE",
        seq=fork_seq,
        prev_hash=chains[fork_k.device_id][fork_seq - 1]["prev_hash"],
        advance=False,
    )
    outgoing: dict[str, list[bytes]] = defaultdict(list)
    good: dict[str, str] = {}
    for k in kiosks:
        for r in chains[k.device_id]:
            if r is deleted:
                continue
            outgoing[k.device_id].append(canonical_json(r))
            good[r["id"]] = k.device_id
    outgoing[fork_k.device_id].append(canonical_json(forked))
    good[forked["id"]] = fork_k.device_id
    outgoing[tamper_k.device_id].insert(150, canonical_json(tampered))
    for k in kiosks:  # a kiosk re-sends some records (sent, not acked in time)
        msgs = outgoing[k.device_id]
        msgs.extend(rnd.sample(msgs[:-1], 15))
    unknown = SimKiosk(box.public_key)
    outgoing[unknown.device_id] = [
        canonical_json(unknown.record(kpm_id=f"U{j}")) for j in range(10)
    ]
    return {
        "kiosks": kiosks, "unknown": unknown, "outgoing": outgoing, "good": good,
        "tampered": tampered, "deleted": deleted, "forked": forked, "fork_seq": fork_seq,
        "gap_k": gap_k, "fork_k": fork_k, "tamper_k": tamper_k,
    }  # fmt: skip


@pytest.mark.slow
def test_fleet_two_workers_every_record_ends_where_it_should(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    box = hq_box_key()
    fleet = build_fleet(20, 500, box)
    total = sum(len(v) for v in fleet["outgoing"].values())
    assert len(fleet["good"]) == 10_000 and total > 10_300
    db = open_database(db_url)
    for k in fleet["kiosks"]:
        add_device(db, k.device_id, k.public_key)
    broker = hq_broker(tmp_path / "broker", pki)
    workers = [
        IngestWorker(settings_for(pki, broker, cn, db_url), open_database(db_url))
        for cn in WORKER_CNS
    ]
    links: list[KioskLink] = []
    probe = StoredProbe(db_url)
    try:
        broker.start()
        for w in workers:
            w.start()
        for w in workers:
            assert w.wait_connected(60), broker.log_tail()
        ordered = [*fleet["kiosks"], fleet["unknown"]]
        links = [KioskLink(broker, pki, k, probe) for k in ordered]
        pubs = [
            threading.Thread(target=link.publish, args=(fleet["outgoing"][k.device_id],))
            for link, k in zip(links, ordered, strict=True)
        ]
        for p in pubs:
            p.start()
        for p in pubs:
            p.join(300)
        good = fleet["good"]

        def all_acked() -> bool:
            return sum(len(x.acked) for x in links) >= len(good)

        wait_for(all_acked, 300, "acks for every good record")
        wait_for(lambda: sum(w.stats.received for w in workers) >= total, 120, "all messages seen")
    finally:
        for w in workers:
            w.stop()
        for link in links:
            link.close()
        broker.kill9()

    stored = {r[0]: r[1] for r in db.rows("SELECT id, device_id FROM records")}
    assert stored == good  # every good record exactly once (id is the key), nothing else
    acked = {i for link in links for i in link.acked}
    assert acked == set(good)
    assert [i for link in links for i in link.ack_before_commit] == []
    assert fleet["tampered"]["id"] in good  # the original arrived; the altered copy did not
    assert all(w.stats.stored > 0 for w in workers), [w.stats.as_dict() for w in workers]
    assert sum(w.stats.stored for w in workers) == len(good)
    assert sum(w.stats.duplicates for w in workers) == 20 * 15

    rep = build_report(db, None, "test")
    devices = rep["devices"]
    assert len(devices) == 20
    for k in fleet["kiosks"]:
        d = devices[k.device_id]
        gaps = [[250, 250]] if k is fleet["gap_k"] else []
        forks = [fleet["fork_seq"]] if k is fleet["fork_k"] else []
        bad = 1 if k is fleet["tamper_k"] else 0
        assert (d["last_seq"], d["gaps"], d["forks"], d["bad_signatures"]) == (
            500,
            gaps,
            forks,
            bad,
        ), k.device_id
    assert rep["unknown_devices"] == {fleet["unknown"].device_id: 10}
    reasons = dict(db.rows("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason"))
    assert reasons == {BAD_SIGNATURE: 1, UNKNOWN_DEVICE: 10}
    (period,) = rep["periods"]
    assert period["records"] == 10_000
    assert period["decisions"]["no_match"] == 20 * 50 - 1  # the deleted seq 250 was a no_match
    db.close()
    print(
        f"fleet ({'postgres' if is_postgres(db_url) else 'sqlite'}): {total} messages in {time.monotonic() - t0:.1f}s"
    )


def test_no_ack_while_database_is_down_then_redelivered_and_stored(
    pki: Pki, tmp_path: Path
) -> None:
    """The DB is locked: nothing is acked; the worker stops; a new one gets the redelivery."""
    box = hq_box_key()
    url = str(tmp_path / "hq.db")
    db = open_database(url)
    kiosk = SimKiosk(box.public_key)
    add_device(db, kiosk.device_id, kiosk.public_key)
    records = [kiosk.record(kpm_id=f"K{i}") for i in range(40)]
    broker = hq_broker(tmp_path / "broker", pki)
    cfg = settings_for(pki, broker, HQ_IDENTITY, url)
    cfg = HqSettings(cfg.broker, DatabaseConfig(url=url, busy_timeout_ms=100), cfg.keys, cfg.ingest)
    first = IngestWorker(cfg, open_database(url, 100))
    blocker = sqlite3.connect(url, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    second: IngestWorker | None = None
    link: KioskLink | None = None
    try:
        broker.start()
        first.start()
        assert first.wait_connected(60), broker.log_tail()
        link = KioskLink(broker, pki, kiosk, StoredProbe(url))
        junk = [b"\xff\xfe\x00", b"[]", b"{}", b"x" * 5000]
        link.publish(junk + [canonical_json(r) for r in records])
        wait_for(lambda: first.stats.db_errors >= 3, 60, "failed commits")
        assert link.acked == set()  # nothing stored, nothing acked
        first.stop()  # a worker that never committed: the broker still holds the messages
        blocker.execute("ROLLBACK")
        blocker.close()
        second = IngestWorker(cfg, open_database(url))
        second.start()
        assert second.wait_connected(60)
        wait_for(lambda: len(link.acked) == 40, 120, "acks after redelivery")
        wait_for(lambda: second.stats.quarantined == 4, 60, "junk quarantined")
    finally:
        for w in (first, second):
            if w is not None:
                w.stop()
        if link is not None:
            link.close()
        broker.kill9()
    assert link.ack_before_commit == []
    assert {r[0] for r in db.rows("SELECT id FROM records")} == {r["id"] for r in records}
    assert first.stats.stored == 0 and second.stats.stored == 40
    assert db.one("SELECT COUNT(*) FROM quarantine WHERE reason = 'malformed record'") == (4,)
    db.close()


WORKER_CODE = (
    "import sys; from edge.cli import cli, main; from edge_hq.cli import hq_group\n"
    "'hq' in cli.commands or cli.add_command(hq_group)\nsys.exit(main(sys.argv[1:]))"
)


class IngestProcess:
    """`edge hq ingest -v --json` as a real process; `ready` is set once it is subscribed."""

    def __init__(self, toml: Path) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER_CODE,
                "-v",
                "hq",
                "ingest",
                "--hq-config",
                str(toml),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        self.ready = threading.Event()
        self.lines: list[str] = []

        def watch() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                if "subscribed to" in line:
                    self.ready.set()

        self.watcher = threading.Thread(target=watch, daemon=True)
        self.watcher.start()

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(
            lambda: self.ready.is_set() or self.proc.poll() is not None, timeout, "ingest ready"
        )
        assert self.ready.is_set(), "".join(self.lines[-20:])

    def stop(self) -> tuple[int, str]:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out = self.proc.stdout.read() if self.proc.stdout else ""
        code = self.proc.wait(60)
        self.watcher.join(10)
        return code, out


@pytest.mark.slow
def test_ingest_process_killed_mid_stream_loses_and_doubles_nothing(
    pki: Pki, tmp_path: Path
) -> None:
    """SIGKILL `edge hq ingest` mid-stream; a restart gets the unacked rest; SIGTERM exits 0."""
    import json

    from tests.support.helpers import write_toml

    n = 2000
    box = hq_box_key()
    url = str(tmp_path / "hq.db")
    db = open_database(url)
    kiosk = SimKiosk(box.public_key)
    add_device(db, kiosk.device_id, kiosk.public_key)
    broker = hq_broker(tmp_path / "broker", pki)
    tls = pki.client(HQ_IDENTITY)
    toml = write_toml(
        tmp_path / "hq.toml",
        {
            "broker": {
                "host": broker.host, "port": broker.port, "ca_file": str(tls.ca_file),
                "cert_file": str(tls.cert_file), "key_file": str(tls.key_file),
            },
            "database": {"url": url},
            "keys": {"dir": str(hq_key_dir())},
            "ingest": {"batch_max": 50},
        },
    )  # fmt: skip
    first = IngestProcess(toml)
    second: IngestProcess | None = None
    link: KioskLink | None = None
    probe = StoredProbe(url)
    try:
        broker.start()
        first.wait_ready()
        link = KioskLink(broker, pki, kiosk, probe)
        recs = [kiosk.record(kpm_id=f"K{i}") for i in range(n)]
        pub = threading.Thread(target=link.publish, args=([canonical_json(r) for r in recs],))
        pub.start()
        wait_for(lambda: db.one("SELECT COUNT(*) FROM records")[0] >= n // 5, 120, "progress")  # type: ignore[index]
        first.proc.kill()  # SIGKILL: whatever was not committed was not acked either
        first.proc.wait(30)
        killed_at = db.one("SELECT COUNT(*) FROM records")
        second = IngestProcess(toml)
        second.wait_ready()
        pub.join(120)
        try:
            wait_for(lambda: len(link.acked) == n, 180, "every record acked after the restart")
        except AssertionError:
            stored_now = db.one("SELECT COUNT(*) FROM records")
            tail = "".join(second.lines[-15:])
            raise AssertionError(
                f"acked {len(link.acked)}/{n}, stored {stored_now}\n{tail}"
            ) from None
        code, out = second.stop()
    finally:
        for p in (first, second):
            if p is not None and p.proc.poll() is None:
                p.proc.kill()
        if link is not None:
            link.close()
        broker.kill9()
    assert code == 0, "".join(second.lines[-20:])
    assert killed_at is not None and 0 < killed_at[0] < n
    assert json.loads(out)["stored"] == n - killed_at[0]
    assert db.one("SELECT COUNT(*), COUNT(DISTINCT id) FROM records") == (n, n)
    assert link.ack_before_commit == []
    db.close()
