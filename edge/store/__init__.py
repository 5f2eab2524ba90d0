"""The kiosk's SQLite store: the only place with SQL, one small repository per concern.

- `db.py` the connection (WAL, synchronous=FULL, busy timeout), its lock, transactions, meta;
- `records.py` the signed chain: append, signed head, reads, purge;
- `outbox.py` the outbox rows and the outbox bound (`capacity`, stated once);
- `served.py` the served ledger (once per KPM, programme and period, stated once);
- `attempts.py` failed face checks; `roster.py` bundles and entries; `events.py` audit.

`Store` opens the file, runs the migrations and holds one of each, sharing one `Db`, so a
verification's record, outbox row, ledger row and attempt count commit in one
transaction: a crash leaves either all or none. Its methods are the callers' short
names for the repositories' (callers that need more use `store.outbox`, `store.roster`...).
sqlite-utils is not used: table creation and changes are named migrations in plain SQL
(edge/migrations.py) and the few upserts are one `INSERT ... ON CONFLICT` each.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from edge.errors import BadInput
from edge.migrations import migrate
from edge.roster import Bundle, RosterEntry
from edge.store.attempts import Attempts
from edge.store.db import Db, Tx, connect
from edge.store.events import Events
from edge.store.outbox import OutboxFull, OutboxLimits, OutboxRows
from edge.store.records import Records, StoreIntegrityError
from edge.store.roster import Roster
from edge.store.served import SERVED_DECISIONS, Served

__all__ = [
    "SERVED_DECISIONS",
    "OutboxFull",
    "OutboxLimits",
    "Store",
    "StoreIntegrityError",
    "connect",
]


class Store:
    """One database file and its repositories; safe to call from several threads."""

    def __init__(self, path: Path, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.db = Db(self.path, connect(self.path, busy_timeout_ms))
        try:
            with self.db.lock:
                migrate(self.db.conn)
        except sqlite3.DatabaseError as exc:
            raise BadInput(f"{self.path}: not a bansos-edge database: {exc}") from None
        self.outbox = OutboxRows(self.db)
        self.served_ledger = Served(self.db)
        self.attempts = Attempts(self.db)
        self.records = Records(self.db, self.outbox, self.served_ledger, self.attempts)
        self.roster = Roster(self.db)
        self.audit = Events(self.db)

    @property
    def conn(self) -> sqlite3.Connection:
        """The raw connection: for the store's repositories, migrations and tests only."""
        return self.db.conn

    @property
    def lock(self) -> Any:
        return self.db.lock

    def close(self) -> None:
        with self.db.lock:
            self.db.conn.close()

    def transaction(self) -> Tx:
        return self.db.transaction()

    def quick_check(self) -> str | None:
        return self.db.quick_check()

    def get_meta(self, key: str) -> str | None:
        return self.db.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self.db.set_meta((key, value))

    # -- records -------------------------------------------------------------------
    def append(
        self,
        build: Callable[[int, str], dict[str, Any]],
        limits: OutboxLimits | None = None,
        *,
        head_key: SigningKey | None = None,
        override: bool = False,
    ) -> dict[str, Any]:
        return self.records.append(build, limits, head_key=head_key, override=override)

    def chain_head(self) -> tuple[int, str]:
        return self.records.chain_head()

    def chain_anchor(self) -> tuple[int, str]:
        return self.records.chain_anchor()

    def signed_head(self) -> dict[str, Any] | None:
        return self.records.signed_head()

    def sign_current_head(self, key: SigningKey, device_id: str) -> dict[str, Any]:
        return self.records.sign_current_head(key, device_id)

    def expected_head(self) -> int:
        return self.records.expected_head()

    def iter_bodies(self) -> Iterator[tuple[int, str]]:
        return self.records.iter_bodies()

    def iter_rows(self) -> Iterator[tuple[int, str, str]]:
        return self.records.iter_rows()

    def iter_records(self) -> Iterator[dict[str, Any]]:
        for _seq, body in self.records.iter_bodies():
            yield json.loads(body)

    def get_record(self, record_id: str) -> dict[str, Any] | None:
        return self.records.get(record_id)

    def record_count(self) -> int:
        return self.records.count()

    def last_decision(
        self, kpm_id: str, programme: str, period: str, decisions: tuple[str, ...]
    ) -> str | None:
        return self.records.last_decision(kpm_id, programme, period, decisions)

    def refused_since(self, kpm_id: str, programme: str, period: str, seq: int) -> bool:
        return self.records.refused_since(kpm_id, programme, period, seq)

    def purge_acked(self, acked_before: float) -> int:
        return self.records.purge_acked(acked_before)

    # -- served ledger and attempts ------------------------------------------------
    def served(self, kpm_id: str, programme: str, period: str) -> bool:
        """Has this KPM already received this programme's aid this period (match or manual)?"""
        return self.served_ledger.by(kpm_id, programme, period) is not None

    def served_by(self, kpm_id: str, programme: str, period: str) -> dict[str, Any] | None:
        return self.served_ledger.by(kpm_id, programme, period)

    def attempts_used(self, officer_id: str, kpm_id: str, programme: str, period: str) -> int:
        return self.attempts.used(officer_id, kpm_id, programme, period)

    # -- roster --------------------------------------------------------------------
    def import_bundle(self, bundle: Bundle) -> int:
        return self.roster.import_bundle(bundle)

    def roster_entries(self, kpm_id: str) -> list[RosterEntry]:
        return self.roster.entries(kpm_id)

    def current_periods(self, now: float) -> dict[str, str]:
        return self.roster.current_periods(now)

    def roster_summary(self) -> dict[str, Any]:
        return self.roster.summary()

    # -- events --------------------------------------------------------------------
    def log_event(self, kind: str, **detail: Any) -> None:
        """An audit event (never biometric data: callers pass ids and reasons only)."""
        self.audit.log(kind, **detail)

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.audit.recent(limit)
