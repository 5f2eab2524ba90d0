"""Migrations: named, ordered, recorded in `_migrations`, applied once, atomic each."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edge.migrations import MIGRATIONS, Migration, applied, migrate
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
