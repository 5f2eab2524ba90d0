"""Crash test: a writer committing 1,000 verifications is SIGKILLed 20 times at random points.

After every kill the database must hold only whole records, each with its outbox row,
forming one chain that verifies; the writer resumes until 1,000 are committed.
Runtime: about 10-20 s on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from edge.keys import b64, device_id_for, init_device_key
from edge.records import open_evidence, parse_record, record_hash, verify_chain
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # 20 SIGKILLs over 1,000 commits

TOTAL = 1000
KILLS = 20

WRITER = r"""
import sys
from pathlib import Path
from nacl.public import PublicKey
from edge.keys import device_id_for, load_signing_key, unb64
from edge.records import build_record
from edge.store import Store
from tests.roster_fixtures import make_verification

db, key_file, hq_box, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
key = load_signing_key(Path(key_file))
box = PublicKey(unb64(hq_box))
did = device_id_for(key.verify_key)
store = Store(Path(db))
print("ready", store.record_count(), flush=True)
while store.chain_head()[0] < total:
    store.append(
        lambda seq, prev: build_record(
            make_verification(seq, hq_box=box), device_id=did, seq=seq, prev_hash=prev, key=key
        )
    )
    print("committed", store.chain_head()[0], flush=True)
print("done", flush=True)
"""


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _check(db: Path, key_vk: object, device_id: str) -> int:
    """Every invariant a crash must not break; returns the committed count."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = conn.execute(
            "SELECT COUNT(*) FROM records r LEFT JOIN outbox o ON o.record_id = r.id"
            " WHERE o.record_id IS NULL"
        ).fetchone()[0]
        widows = conn.execute(
            "SELECT COUNT(*) FROM outbox o LEFT JOIN records r ON r.id = o.record_id"
            " WHERE r.id IS NULL"
        ).fetchone()[0]
        assert (orphans, widows) == (0, 0), "a record without outbox row or vice versa"
        rows = conn.execute("SELECT seq, hash, body FROM records ORDER BY seq").fetchall()
        head = conn.execute("SELECT value FROM meta WHERE key = 'head_seq'").fetchone()
    finally:
        conn.close()
    records = []
    for seq, h, body in rows:
        rec = parse_record(body.encode("utf-8"))  # whole, well-formed JSON record
        assert rec["seq"] == seq and record_hash(rec) == h
        records.append(rec)
    count, problem = verify_chain(records, key_vk, device_id)  # type: ignore[arg-type]
    assert problem is None, problem
    assert count == len(rows) and [r["seq"] for r in records] == list(range(1, count + 1))
    assert (int(head[0]) if head else 0) == count
    return count


def test_sigkill_never_half_writes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    db = tmp_path / "edge.db"
    key = init_device_key(tmp_path / "device.key")
    did = device_id_for(key.verify_key)
    hq = PrivateKey.generate()
    args = [str(db), str(tmp_path / "device.key"), b64(bytes(hq.public_key)), str(TOTAL)]
    t0 = time.monotonic()
    counts = [0]
    killed_mid_run = 0
    for k in range(KILLS):
        # spread the kills over the first 95% of the commits; the resumed run does the rest
        per_kill = max(1, int((0.95 * TOTAL - counts[-1]) / (KILLS - k)))
        target = min(TOTAL - 1, counts[-1] + rng.randint(1, 2 * per_kill - 1))
        proc = _start(args)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # wait until the writer has opened the store
        assert line.startswith("ready"), proc.stderr.read() if proc.stderr else line
        # the writer reports each commit; kill it as soon as it has reported the target,
        # i.e. somewhere inside its next commit or between two (the phase is up to the OS)
        while not line.startswith("done"):
            line = proc.stdout.readline()
            if not line or (line.startswith("committed") and int(line.split()[1]) >= target):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if proc.returncode == -signal.SIGKILL:
            killed_mid_run += 1
        n = _check(db, key.verify_key, did)
        assert n >= counts[-1]
        counts.append(n)
    # resume until 1,000
    proc = _start(args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "done" in out
    assert _check(db, key.verify_key, did) == TOTAL
    assert killed_mid_run == KILLS, f"only {killed_mid_run} kills landed mid-run: {counts}"
    assert len(set(counts)) > 5, f"kills made little progress: {counts}"
    # every record's evidence is whole: HQ can open it
    conn = sqlite3.connect(db)
    bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM records ORDER BY seq")]
    conn.close()
    for rec in rng.sample(bodies, 50):
        ev = open_evidence(rec["evidence"], hq)
        assert len(ev.embedding) == 128 * 4
    print(f"crash test: {len(counts) - 1} kills, counts {counts}, {time.monotonic() - t0:.1f}s")
