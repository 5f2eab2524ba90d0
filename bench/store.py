"""Store throughput: signed, chained records per second vs plain inserts of the same rows.

Run by hand: `python -m bench.store [-n 1000] [--dir DIR] [--evidence]`.

Both sides run in this one process on the same filesystem with the same pragmas
(WAL, synchronous=FULL) and one transaction per row, so the ratio isolates what
the record path costs on top of a durable insert: building, Ed25519 signing,
chaining to the previous hash and writing the outbox row.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.keys import device_id_for
from edge.records import canonical_json, record_hash
from edge.store import Store, connect
from tests.roster_fixtures import make_verification, record_builder


def bench_store(path: Path, n: int, evidence: bool) -> tuple[float, list[tuple[Any, ...]]]:
    """Commit n verifications through Store.append; returns (seconds, the rows as stored)."""
    key = SigningKey.generate()
    did = device_id_for(key.verify_key)
    box = PrivateKey.generate().public_key if evidence else None
    verifications = [make_verification(i, hq_box=box) for i in range(1, n + 1)]
    store = Store(path)
    t0 = time.perf_counter()
    for v in verifications:
        store.append(record_builder(v, did, key), head_key=key)
    elapsed = time.perf_counter() - t0
    rows = store.conn.execute(
        "SELECT seq, id, captured_at, kpm_id, programme, period, decision, hash, body"
        " FROM records ORDER BY seq"
    ).fetchall()
    store.close()
    return elapsed, rows


def bench_plain(path: Path, rows: list[tuple[Any, ...]]) -> float:
    """Insert the very same rows into a plain table, one durable transaction each."""
    conn = connect(path)
    conn.execute(
        "CREATE TABLE plain (seq INTEGER PRIMARY KEY, id TEXT, captured_at TEXT, kpm_id TEXT,"
        " programme TEXT, period TEXT, decision TEXT, hash TEXT, body TEXT)"
    )
    t0 = time.perf_counter()
    for row in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO plain VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("-n", type=int, default=1000, help="records (default 1000)")
    ap.add_argument(
        "--dir", type=Path, default=None, help="where the databases go (default: a temp dir)"
    )
    ap.add_argument(
        "--evidence", action="store_true", help="seal a face crop and embedding in each record"
    )
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-store-") as tmp:
        store_s, rows = bench_store(Path(tmp) / "store.db", args.n, args.evidence)
        plain_s = bench_plain(Path(tmp) / "plain.db", rows)
        sync = connect(Path(tmp) / "store.db").execute("PRAGMA synchronous").fetchone()[0]
    # sanity: what was timed is a real chain
    assert all(json.loads(r[8])["seq"] == r[0] for r in rows)
    assert record_hash(json.loads(rows[-1][8])) == rows[-1][7]
    store_rate, plain_rate = args.n / store_s, args.n / plain_s
    result = {
        "records": args.n,
        "evidence": args.evidence,
        "synchronous": {2: "FULL"}.get(sync, str(sync)),
        "avg_body_bytes": round(
            sum(len(canonical_json(json.loads(r[8]))) for r in rows) / len(rows)
        ),
        "store_records_per_s": round(store_rate, 1),
        "plain_inserts_per_s": round(plain_rate, 1),
        "ratio_store_to_plain": round(store_rate / plain_rate, 3),
        "store_ms_per_record": round(1000 * store_s / args.n, 3),
        "plain_ms_per_insert": round(1000 * plain_s / args.n, 3),
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "dir": str(args.dir or tempfile.gettempdir()),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"store (sign + chain + outbox, synchronous={result['synchronous']}): "
        f"{result['store_records_per_s']} records/s ({result['store_ms_per_record']} ms each)"
    )
    print(
        f"plain inserts of the same rows, same pragmas:  "
        f"{result['plain_inserts_per_s']} rows/s ({result['plain_ms_per_insert']} ms each)"
    )
    print(
        f"ratio store/plain: {result['ratio_store_to_plain']}  "
        f"(n={args.n}, evidence={args.evidence}, {result['avg_body_bytes']} B/record, "
        f"{result['machine']}, dir {result['dir']})"
    )


if __name__ == "__main__":
    main()
