"""One small database layer over SQLite (default) and PostgreSQL (psycopg 3).

Queries are written once with `?` placeholders; the PostgreSQL side rewrites them to
`%s`. Transactions are explicit (`with db.tx():`) so ingest can commit a batch and only
then acknowledge it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edge.errors import BadInput, DeviceMissing
from edge_hq.schema import MIGRATIONS, render

log = logging.getLogger(__name__)
_MIGRATION_LOCK = 0x6271_6871  # advisory lock id on PostgreSQL ("bqhq")


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without a password, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cred, host = rest.rsplit("@", 1)
    return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"


class Database:
    """A connection plus its dialect; thread-safe by a lock (one worker, one connection)."""

    def __init__(self, url: str, busy_timeout_ms: int = 30_000) -> None:
        self.url = url
        self.lock = threading.RLock()
        self._depth = 0
        if is_postgres(url):
            self.dialect = "postgres"
            self._conn: Any = self._connect_pg(url)
        else:
            self.dialect = "sqlite"
            path = Path(url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url)
            self._conn = self._connect_sqlite(path, busy_timeout_ms)
        self.migrate()

    @staticmethod
    def _connect_sqlite(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path),
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_ms / 1000,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except (sqlite3.DatabaseError, OSError) as exc:
            raise BadInput(f"{path}: cannot open the HQ database: {exc}") from None
        return conn

    @staticmethod
    def _connect_pg(url: str) -> Any:
        try:
            import psycopg
        except ImportError:
            raise DeviceMissing(
                "psycopg is not installed (pip install 'bansos-edge[hq]')"
            ) from None
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DeviceMissing(f"{redact(url)}: cannot connect to PostgreSQL: {msg}") from None

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self.lock:
            return self._conn.execute(self._sql(sql), tuple(params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return list(self._conn.execute(self._sql(sql), tuple(params)).fetchall())

    def iter_rows(
        self, sql: str, params: Sequence[Any] = (), size: int = 5000
    ) -> Iterator[tuple[Any, ...]]:
        """Stream a large result (a named cursor on PostgreSQL) without holding it all."""
        if self.dialect == "postgres":
            with self.lock, self._conn.transaction(), self._conn.cursor(name="hq_stream") as cur:
                cur.itersize = size
                cur.execute(self._sql(sql), tuple(params))
                yield from cur
        else:
            with self.lock:
                cur = self._conn.execute(sql, tuple(params))
                while batch := cur.fetchmany(size):
                    yield from batch

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self.lock:
            row = self._conn.execute(self._sql(sql), tuple(params)).fetchone()
            return tuple(row) if row is not None else None

    @contextlib.contextmanager
    def tx(self) -> Iterator[Database]:
        """One transaction (SQLite: BEGIN IMMEDIATE, so writers queue on the busy timeout)."""
        with self.lock:
            if self.dialect == "postgres":
                with self._conn.transaction():
                    yield self
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def migrate(self) -> list[str]:
        """Apply the named migrations this database lacks; returns the names applied."""
        applied: list[str] = []
        if self._all_applied():
            return applied
        create = "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at {real} NOT NULL)"
        try:
            with self.tx():
                if self.dialect == "postgres":
                    self.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
                self.execute(render(create, self.dialect))
                done = {r[0] for r in self.rows("SELECT name FROM _migrations")}
                for name, statements in MIGRATIONS:
                    if name in done:
                        continue
                    for sql in statements:
                        self.execute(render(sql, self.dialect))
                    self.execute(
                        "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                        (name, time.time()),
                    )
                    applied.append(name)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise DeviceMissing(f"{self.url}: database is locked by another process") from None
            raise BadInput(f"{self.url}: not a bansos-edge HQ database: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise BadInput(f"{self.url}: not a bansos-edge HQ database: {exc}") from None
        if applied:
            log.info("HQ database %s: applied %s", redact(self.url), ", ".join(applied))
        return applied

    def _all_applied(self) -> bool:
        """Read-only check first, so an up-to-date database needs no write lock to open."""
        try:
            done = {r[0] for r in self.rows("SELECT name FROM _migrations")}
        except sqlite3.DatabaseError:
            return False
        except Exception as exc:  # psycopg: undefined table
            if self.dialect != "postgres":
                raise
            log.debug("no _migrations table yet: %s", type(exc).__name__)
            return False
        return all(name in done for name, _ in MIGRATIONS)

    def migrations(self) -> list[str]:
        return [r[0] for r in self.rows("SELECT name FROM _migrations ORDER BY name")]


def open_database(url: str, busy_timeout_ms: int = 30_000) -> Database:
    return Database(url, busy_timeout_ms)
