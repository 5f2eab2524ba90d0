"""One runner for named, ordered schema migrations: the kiosk's SQLite and HQ's databases.

Like sqlite-utils' migrations: each step has a stable name and the `_migrations` table
(name, applied_at) says which ran, so a database upgraded across releases gets only what
it lacks. The two callers differ only in policy, which they pass in:
- the kiosk runs each step in its own transaction (a power cut mid-upgrade keeps the steps
  already done), with Python steps that may look at the data;
- HQ runs all missing steps in one transaction under a lock taken first (`before`: a
  PostgreSQL advisory lock), so ingest workers starting together cannot race.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

LEDGER = "_migrations"
Step = Callable[[], None]


class Ledgered(Protocol):
    """What the runner needs of a database: statements (`?` parameters) and transactions."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def tx(self) -> AbstractContextManager[Any]: ...


def applied(db: Ledgered) -> list[str]:
    """The names already applied, in name order (the ledger must exist)."""
    return [r[0] for r in db.rows(f"SELECT name FROM {LEDGER} ORDER BY name")]


def run(
    db: Ledgered,
    steps: Sequence[tuple[str, Step]],
    *,
    one_transaction: bool = False,
    before: Callable[[], None] | None = None,
    real_type: str = "REAL",
) -> list[str]:
    """Apply the steps whose names the ledger lacks, in order; returns the names applied."""
    ran: list[str] = []
    batches: Iterator[Sequence[tuple[str, Step]]] = (
        iter([steps]) if one_transaction else ([s] for s in steps)
    )
    for batch in batches:
        with db.tx():
            if before is not None:
                before()
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {LEDGER} "
                f"(name TEXT PRIMARY KEY, applied_at {real_type} NOT NULL)"
            )
            done = set(applied(db))  # again inside the transaction: another process may have run
            for name, step in batch:
                if name in done:
                    continue
                step()
                db.execute(
                    f"INSERT INTO {LEDGER} (name, applied_at) VALUES (?, ?)", (name, time.time())
                )
                ran.append(name)
    return ran
