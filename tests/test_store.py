"""The SQLite store: pragmas, one transaction per verification, outbox bounds, purge anchor."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from edge.errors import BadInput
from edge.keys import device_id_for
from edge.records import GENESIS_HASH, RecordInvalid, build_record, record_hash, verify_chain
from edge.roster import parse_bundle
from edge.store import OutboxFull, OutboxLimits, Store
from tests.roster_fixtures import bundle_body, fill_store, make_verification


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "edge.db", busy_timeout_ms=1500)
    yield s
    s.close()


def test_pragmas(store: Store) -> None:
    c = store.conn
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert c.execute("PRAGMA busy_timeout").fetchone()[0] == 1500
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"records", "outbox", "roster", "roster_bundles", "events", "meta"} <= tables
    assert "_migrations" in tables


def test_append_commits_record_and_outbox_together(store: Store) -> None:
    key = SigningKey.generate()
    recs = fill_store(store, key, 5)
    assert store.record_count() == 5
    rows = store.conn.execute("SELECT seq, state, bytes FROM outbox ORDER BY seq").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(i, "pending") for i in range(1, 6)]
    bodies = dict(store.iter_bodies())
    assert all(rows[i][2] == len(bodies[i + 1].encode()) for i in range(5))
    assert store.chain_head() == (5, record_hash(recs[-1]))
    assert store.get_meta("head_seq") == "5"
    assert store.get_record(recs[2]["id"]) == recs[2]
    assert store.served(recs[0]["kpm_id"], recs[0]["programme"], "2026-11")
    assert not store.served("KPM-nobody", "pkh", "2026-11")


def test_failed_build_leaves_nothing(store: Store) -> None:
    key = SigningKey.generate()
    fill_store(store, key, 2)
    did = device_id_for(key.verify_key)

    def bad_build(seq: int, prev: str) -> dict[str, Any]:
        v = make_verification(seq, decision="nonsense")
        return build_record(v, device_id=did, seq=seq, prev_hash=prev, key=key)

    with pytest.raises(RecordInvalid):
        store.append(bad_build)

    def dup_id(seq: int, prev: str) -> dict[str, Any]:
        first = store.iter_records().__next__()
        return build_record(
            make_verification(seq), device_id=did, seq=seq, prev_hash=prev, key=key,
            record_id=first["id"],
        )  # fmt: skip

    with pytest.raises(sqlite3.IntegrityError):
        store.append(dup_id)
    assert store.record_count() == 2
    assert store.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 2
    assert not store.conn.in_transaction
    # and the store still works afterwards
    fill_store(store, key, 1, start=3)
    assert verify_chain(store.iter_records(), key.verify_key)[1] is None


def test_outbox_limits_refuse_without_dropping(store: Store) -> None:
    key = SigningKey.generate()
    fill_store(store, key, 3)
    did = device_id_for(key.verify_key)

    def build(seq: int, prev: str) -> dict[str, Any]:
        return build_record(make_verification(seq), device_id=did, seq=seq, prev_hash=prev, key=key)

    with pytest.raises(OutboxFull) as info:
        store.append(build, OutboxLimits(max_rows=3, max_bytes=10**9))
    assert info.value.exit_code == 3 and "sync" in str(info.value)
    with pytest.raises(OutboxFull):
        store.append(build, OutboxLimits(max_rows=100, max_bytes=100))
    assert store.record_count() == 3
    store.conn.execute("UPDATE outbox SET state = 'acked', acked_at = 1 WHERE seq = 1")
    store.append(build, OutboxLimits(max_rows=3, max_bytes=10**9))
    assert store.record_count() == 4


def test_purge_keeps_chain_anchored(store: Store) -> None:
    key = SigningKey.generate()
    recs = fill_store(store, key, 10)
    # seqs 1-4 acked long ago, 5 acked recently, 6 acked long ago (not contiguous: stays)
    store.conn.execute("UPDATE outbox SET state='acked', acked_at=100 WHERE seq <= 4 OR seq = 6")
    store.conn.execute("UPDATE outbox SET state='acked', acked_at=10000 WHERE seq = 5")
    assert store.purge_acked(acked_before=1000) == 4
    assert [r["seq"] for r in store.iter_records()] == list(range(5, 11))
    assert store.chain_anchor() == (4, record_hash(recs[3]))
    count, problem = verify_chain(
        store.iter_records(), key.verify_key, start_seq=5, start_hash=record_hash(recs[3])
    )
    assert (count, problem) == (6, None)
    # purge everything acked: the head survives as the anchor and appends continue the chain
    store.conn.execute("UPDATE outbox SET state='acked', acked_at=100")
    assert store.purge_acked(acked_before=1000) == 6
    assert store.record_count() == 0
    assert store.chain_head() == (10, record_hash(recs[-1]))
    new = fill_store(store, key, 1, start=11)[0]
    assert new["seq"] == 11 and new["prev_hash"] == record_hash(recs[-1])


def test_roster_import_and_lookup(store: Store) -> None:
    bundle = parse_bundle(bundle_body(3))
    assert store.import_bundle(bundle) == 3
    entries = store.roster_entries("KPM-000001")
    assert len(entries) == 1 and entries[0].templates == bundle.entries[1].templates
    assert store.roster_summary()["entries"] == 3
    store.log_event("roster_imported", bundle_id=bundle.bundle_id)
    assert store.events()[0]["kind"] == "roster_imported"


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BadInput) as info:
        Store(path)
    assert str(path) in str(info.value)


def test_concurrent_appends_from_two_connections(tmp_path: Path) -> None:
    """Two Store objects on one file (e.g. daemon and a CLI) never fork the chain."""
    key = SigningKey.generate()
    a, b = Store(tmp_path / "edge.db"), Store(tmp_path / "edge.db")
    errors: list[BaseException] = []

    def work(s: Store) -> None:
        try:
            fill_store(s, key, 40, start=1 if s is a else 41)  # different KPMs
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    count, problem = verify_chain(a.iter_records(), key.verify_key)
    assert (count, problem) == (80, None)
    a.close()
    b.close()


def test_genesis(store: Store) -> None:
    assert store.chain_head() == (0, GENESIS_HASH)
    assert store.expected_head() == 0


def test_locked_database_fails_cleanly_and_releases(tmp_path: Path) -> None:
    """A writer blocked past the busy timeout gets an error, and the store stays usable."""
    key = SigningKey.generate()
    store = Store(tmp_path / "edge.db", busy_timeout_ms=200)
    other = sqlite3.connect(tmp_path / "edge.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        fill_store(store, key, 1)
    other.execute("ROLLBACK")
    other.close()
    # another thread can take the store's lock and commit (the lock was not leaked)
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(len(fill_store(store, key, 2))))
    t.start()
    t.join(timeout=60)
    assert done == [2] and store.record_count() == 2
    store.close()
