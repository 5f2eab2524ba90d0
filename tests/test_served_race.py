"""Once per KPM, programme and period, even with two writers racing on one store.

Two real processes (think: the daemon and an `edge verify --image` on the same kiosk)
run the real verification flow over one SQLite file with the same device key; for each
of 100 KPMs both verify at the same moment (a barrier), with a face decider that always
says `match` and a camera burst that takes a few milliseconds, as a real one does.
Exactly one handover per KPM may be recorded; the other writer records `already_served`.
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from edge.keys import device_id_for, unb64
from edge.records import verify_chain
from edge.roster import Bundle, RosterEntry, encode_template
from edge.store import Store

PAIRS = 100
MODEL = "ab" * 32


class _Match:
    decision = "match"
    score = 0.8
    threshold = 0.365
    frames_used = 3
    reason = None
    crop = None
    embedding = None


class _Decider:
    embedder_sha256 = MODEL

    def verify_burst(self, frames: Any, references: Any) -> _Match:
        return _Match()


def _writer(db: str, seed: bytes, barrier: Any, out: Any) -> None:
    import time

    from nacl.signing import SigningKey

    from edge.verification import Verifier, parse_request

    key = SigningKey(seed)
    store = Store(Path(db))

    def burst(n: int) -> list[np.ndarray]:
        time.sleep(0.005)  # a camera burst takes time; the race window is real
        return [np.zeros((8, 8, 3), np.uint8)] * n

    verifier = Verifier(
        store=store,
        decider=_Decider(),
        burst=burst,
        burst_frames=2,
        where=lambda place: (None, "unknown"),
        when=lambda: (1_795_000_000.0, "gps"),
        key=key,
        device_id=device_id_for(key.verify_key),
        hq_box_key=None,
        limits=None,
    )
    decisions = []
    for i in range(PAIRS):
        barrier.wait(timeout=60)
        answer = verifier.verify(parse_request({"kpm_id": f"KPM-{i:03d}", "officer_id": "o"}))
        decisions.append(answer["decision"])
    store.close()
    out.put(decisions)


def test_two_processes_serve_each_kpm_once(tmp_path: Path) -> None:
    from nacl.signing import SigningKey

    db = tmp_path / "edge.db"
    store = Store(db)
    t = unb64(encode_template(np.ones(128, dtype=np.float32) / np.sqrt(128)))
    entries = tuple(
        RosterEntry(f"KPM-{i:03d}", "sembako", "2026-11", (t,), None) for i in range(PAIRS)
    )
    store.import_bundle(Bundle("b1", "2026-11-01T00:00:00Z", MODEL, "*", entries, {}))
    store.close()
    key = SigningKey.generate()
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(str(db), bytes(key), barrier, out)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    conn = sqlite3.connect(db)
    served = dict(
        conn.execute(
            "SELECT kpm_id, COUNT(*) FROM records WHERE decision IN ('match', 'manual')"
            " GROUP BY kpm_id"
        ).fetchall()
    )
    doubles = {k: n for k, n in served.items() if n > 1}
    assert not doubles, f"{len(doubles)} of {PAIRS} KPMs served twice: {sorted(doubles)[:5]}"
    assert len(served) == PAIRS
    refused = conn.execute(
        "SELECT COUNT(*) FROM records WHERE decision = 'already_served'"
    ).fetchone()[0]
    assert refused == PAIRS and [d for r in results for d in r].count("match") == PAIRS
    conn.close()
    store = Store(db)
    assert verify_chain(store.iter_records(), key.verify_key) == (2 * PAIRS, None)
    store.close()
