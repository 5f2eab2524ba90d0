"""The store's connection: one SQLite file, its durability pragmas, one lock, transactions, meta.

Every repository of the store (records, outbox, roster, served ledger, attempts, events)
works through one `Db`, so their writes can share one transaction: a verification's
record, outbox row, served-ledger row and attempt count commit together or not at all.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from edge.errors import BadInput


def connect(path: Path, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """A connection in autocommit mode (we BEGIN explicitly) with the durability pragmas."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise BadInput(f"{path}: cannot open the database: {exc}") from None
    return conn


class Db:
    """The connection and the re-entrant lock every repository takes around its SQL."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.lock = threading.RLock()

    def transaction(self) -> Tx:
        return Tx(self)

    def get_meta(self, key: str) -> str | None:
        with self.lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, *pairs: tuple[str, str]) -> None:
        """Write meta keys (inside the caller's transaction, if any)."""
        with self.lock:
            self.conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", pairs)

    def delete_meta(self, key: str) -> None:
        with self.lock:
            self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def quick_check(self) -> str | None:
        """None when SQLite's `PRAGMA quick_check` says ok, else its first complaint."""
        try:
            with self.lock:
                rows = self.conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return str(exc)
        first = str(rows[0][0]) if rows else "no answer"
        return None if first == "ok" and len(rows) == 1 else first


class Tx:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (re-entrant per store)."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> Tx:
        self.db.lock.acquire()
        try:
            self.outer = not self.db.conn.in_transaction
            if self.outer:
                self.db.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            # BEGIN can fail (database locked past the busy timeout): __exit__ will not
            # run, so release the lock here or every other thread would hang on it.
            self.db.lock.release()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self.outer:
                self.db.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.db.lock.release()
