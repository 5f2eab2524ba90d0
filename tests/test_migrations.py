"""Migrations: named, ordered, recorded in `_migrations`, applied once, atomic each."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edge import migration_runner as runner
from edge.migrations import MIGRATIONS, Migration, SqliteLedger, applied, migrate
from edge.records import verify_chain
from edge.store import Store, connect
from tests.roster_fixtures import fill_store


def test_names_are_unique_and_ordered() -> None:
    names = [n for n, _ in MIGRATIONS]
    assert names == sorted(names) and len(set(names)) == len(names)


def test_fresh_database_records_every_migration(tmp_path: Path) -> None:
    conn = connect(tmp_path / "edge.db")
    assert migrate(conn) == [n for n, _ in MIGRATIONS]
    assert applied(conn) == [n for n, _ in MIGRATIONS]
    rows = conn.execute("SELECT name, applied_at FROM _migrations").fetchall()
    assert all(isinstance(t, float) and t > 1.6e9 for _, t in rows)
    assert migrate(conn) == []  # a second run applies nothing
    conn.close()


def test_upgrade_applies_only_what_is_missing(tmp_path: Path) -> None:
    """An older kiosk database (first two migrations, with data) gains the rest, data intact."""
    path = tmp_path / "edge.db"
    conn = connect(path)
    migrate(conn, MIGRATIONS[:2])
    conn.close()
    # the old version could only write records and outbox; emulate by finishing via Store
    conn = connect(path)
    ran = migrate(conn)
    assert ran == [n for n, _ in MIGRATIONS[2:]]
    conn.close()
    key = SigningKey.generate()
    store = Store(path)
    fill_store(store, key, 3)
    store.close()

    # a later release adds a migration: only it runs, existing rows survive
    def add_note(c: sqlite3.Connection) -> None:
        c.execute("ALTER TABLE records ADD COLUMN note TEXT")

    added: list[Migration] = [*MIGRATIONS, ("999_test_column", add_note)]
    conn = connect(path)
    assert migrate(conn, added) == ["999_test_column"]
    assert conn.execute("SELECT COUNT(*) FROM records WHERE note IS NULL").fetchone()[0] == 3
    conn.close()
    store = Store(path)
    assert verify_chain(store.iter_records(), key.verify_key) == (3, None)
    store.close()


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    conn = connect(path)

    def half_done(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        migrate(conn, [*MIGRATIONS, ("005_half", half_done)])
    assert "005_half" not in applied(conn)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    assert not conn.in_transaction
    assert applied(conn) == [n for n, _ in MIGRATIONS]
    conn.close()


def test_second_connection_finds_migrations_done(tmp_path: Path) -> None:
    """A second connection (daemon + CLI) on a migrated file applies nothing again."""
    path = tmp_path / "edge.db"
    a = connect(path)
    b = connect(path)
    migrate(a)
    assert migrate(b) == []
    assert b.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
    a.close()
    b.close()


def _boom() -> None:
    raise RuntimeError("step failed")


def test_kiosk_policy_keeps_the_steps_done_before_a_failure(tmp_path: Path) -> None:
    """Each kiosk step is its own transaction: a failure later keeps what ran."""
    conn = connect(tmp_path / "edge.db")

    def make(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE a (x)")

    with pytest.raises(RuntimeError, match="step failed"):
        migrate(conn, [("001_a", make), ("002_boom", lambda c: _boom())])
    assert applied(conn) == ["001_a"]
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'a'").fetchone()


def test_hq_policy_is_all_or_nothing_with_the_same_runner(tmp_path: Path) -> None:
    """HQ's policy (one transaction, a lock first) through the kiosk's runner and ledger."""
    conn = connect(tmp_path / "hq.db")
    db = SqliteLedger(conn)
    locked: list[bool] = []

    def make() -> None:
        conn.execute("CREATE TABLE a (x)")

    steps: list[tuple[str, runner.Step]] = [("001_a", make), ("002_boom", _boom)]
    with pytest.raises(RuntimeError, match="step failed"):
        runner.run(db, steps, one_transaction=True, before=lambda: locked.append(True))
    assert locked == [True]
    assert applied(conn) == []
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'a'").fetchone() is None
    assert runner.run(db, steps[:1], one_transaction=True) == ["001_a"]
    assert runner.run(db, steps[:1], one_transaction=True) == []


def test_hq_database_migrates_through_the_shared_runner(tmp_path: Path) -> None:
    from edge_hq.db import open_database
    from edge_hq.schema import MIGRATIONS as HQ_MIGRATIONS

    db = open_database(str(tmp_path / "hq.db"))
    try:
        assert db.migrations() == [n for n, _ in HQ_MIGRATIONS]
        assert runner.applied(db) == db.migrations()
        assert db.migrate() == []
    finally:
        db.close()
