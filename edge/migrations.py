"""Named, ordered schema migrations, recorded in the database as they are applied.

Like sqlite-utils' own migrations: each has a stable name; the `_migrations` table
says which ran, so a kiosk upgraded across versions applies only what it lacks. The
runner (edge/migration_runner.py) is HQ's too; here each step is its own transaction.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from edge import migration_runner as runner

Migration = tuple[str, Callable[[sqlite3.Connection], None]]


def _m001_records(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE records (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            captured_at TEXT NOT NULL,
            kpm_id TEXT NOT NULL,
            programme TEXT NOT NULL,
            period TEXT NOT NULL,
            decision TEXT NOT NULL,
            hash TEXT NOT NULL,
            body TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX records_kpm ON records (kpm_id, programme, period, decision)")


def _m002_outbox(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE outbox (
            record_id TEXT PRIMARY KEY REFERENCES records(id),
            seq INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'acked')),
            bytes INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            sent_at REAL,
            acked_at REAL
        )"""
    )
    conn.execute("CREATE INDEX outbox_state ON outbox (state, seq)")


def _m003_roster(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE roster_bundles (
            bundle_id TEXT PRIMARY KEY,
            issued_at TEXT NOT NULL,
            model TEXT NOT NULL,
            imported_at REAL NOT NULL,
            entries INTEGER NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE roster (
            kpm_id TEXT NOT NULL,
            programme TEXT NOT NULL,
            period TEXT NOT NULL,
            bundle_id TEXT NOT NULL REFERENCES roster_bundles(bundle_id),
            templates TEXT NOT NULL,
            place TEXT,
            PRIMARY KEY (kpm_id, programme, period)
        )"""
    )


def _m004_events(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _m005_eligibility(conn: sqlite3.Connection) -> None:
    """Roster validity windows, template sources, and a `served` ledger that purges keep.

    `served` holds one row per handover (match or manual) so `already_served` still
    answers after the record itself was purged (retention can be shorter than a period).
    """
    conn.execute("ALTER TABLE roster_bundles ADD COLUMN valid_from REAL")
    conn.execute("ALTER TABLE roster_bundles ADD COLUMN valid_until REAL")
    conn.execute("ALTER TABLE roster ADD COLUMN template_sources TEXT")
    conn.execute(
        """CREATE TABLE served (
            record_id TEXT PRIMARY KEY,
            kpm_id TEXT NOT NULL,
            programme TEXT NOT NULL,
            period TEXT NOT NULL,
            seq INTEGER NOT NULL,
            device_id TEXT NOT NULL,
            captured_at TEXT NOT NULL,
            decision TEXT NOT NULL,
            geo TEXT,
            geofence TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX served_kpm ON served (kpm_id, programme, period, seq)")
    conn.execute(
        """INSERT INTO served SELECT id, kpm_id, programme, period, seq,
               json_extract(body, '$.device_id'), captured_at, decision,
               json_extract(body, '$.geo'), json_extract(body, '$.geofence')
           FROM records WHERE decision IN ('match', 'manual')"""
    )


def _m006_integrity(conn: sqlite3.Connection) -> None:
    """Once per KPM, programme and period as a constraint; face attempts in the store.

    `served.override` numbers the handovers of one KPM/programme/period: 0 for the
    handover, 1, 2, ... for manual overrides of `already_served` (which HQ reviews). The
    UNIQUE index makes a second handover without an override impossible, whoever writes.
    Existing rows are numbered by seq, so a store that already holds overrides upgrades.

    A store that already holds records has no signed head yet: `legacy_unsigned_head`
    lets the daemon sign its current head once (see edge/integrity.py).
    """
    conn.execute("ALTER TABLE served ADD COLUMN override INTEGER NOT NULL DEFAULT 0")
    conn.execute(
        """UPDATE served SET override = (
               SELECT COUNT(*) FROM served s2 WHERE s2.kpm_id = served.kpm_id
               AND s2.programme = served.programme AND s2.period = served.period
               AND s2.seq < served.seq)"""
    )
    conn.execute("CREATE UNIQUE INDEX served_once ON served (kpm_id, programme, period, override)")
    conn.execute(
        """CREATE TABLE attempts (
            officer_id TEXT NOT NULL,
            kpm_id TEXT NOT NULL,
            programme TEXT NOT NULL,
            period TEXT NOT NULL,
            used INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            PRIMARY KEY (officer_id, kpm_id, programme, period)
        )"""
    )
    if (
        conn.execute("SELECT 1 FROM records LIMIT 1").fetchone()
        or conn.execute("SELECT 1 FROM meta WHERE key IN ('head_seq', 'anchor_seq')").fetchone()
    ):
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('legacy_unsigned_head', '1')"
        )


MIGRATIONS: list[Migration] = [
    ("001_records", _m001_records),
    ("002_outbox", _m002_outbox),
    ("003_roster", _m003_roster),
    ("004_events_meta", _m004_events),
    ("005_eligibility", _m005_eligibility),
    ("006_integrity", _m006_integrity),
]


class SqliteLedger:
    """A raw sqlite3 connection (autocommit) as the runner's database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, tuple(params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, tuple(params)).fetchall())

    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")  # writers queue on the busy timeout
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


def applied(conn: sqlite3.Connection) -> list[str]:
    """The migrations this database has, by name (creates the empty ledger if need be)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    return runner.applied(SqliteLedger(conn))


def migrate(conn: sqlite3.Connection, migrations: list[Migration] = MIGRATIONS) -> list[str]:
    """Apply the missing migrations in order, each in its own transaction; returns their names."""
    done = set(applied(conn))
    steps = [(name, functools.partial(fn, conn)) for name, fn in migrations if name not in done]
    return runner.run(SqliteLedger(conn), steps) if steps else []
