"""The kiosk's SQLite store: records with their outbox rows, roster, events, meta.

WAL, synchronous=FULL and a busy timeout; a verification's record and its outbox
row commit in one transaction, so a crash leaves either both or neither.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from nacl.signing import SigningKey

from bansos_contract.utc import iso_s as format_utc
from edge.errors import EXIT_MISSING, BadInput, EdgeError
from edge.keys import b64, unb64
from edge.migrations import migrate
from edge.period import period_key
from edge.records import (
    FAILED_DECISIONS,
    GENESIS_HASH,
    canonical_json,
    record_hash,
    sign_head,
)
from edge.roster import Bundle, RosterEntry

SERVED_DECISIONS = ("match", "manual")


class OutboxFull(EdgeError):
    """The outbox holds as many rows or bytes as the config allows; refuse new records."""

    exit_code = EXIT_MISSING


class StoreIntegrityError(EdgeError):
    """The store is not the one this kiosk committed to (truncated, lost, corrupted):
    nothing may be appended until an admin decides (see edge/integrity.py)."""

    exit_code = EXIT_MISSING


@dataclass(frozen=True)
class OutboxLimits:
    max_rows: int
    max_bytes: int


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


class Store:
    """One database file; methods are safe to call from several threads."""

    def __init__(self, path: Path, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.conn = connect(self.path, busy_timeout_ms)
        self.db = sqlite_utils.Database(self.conn)
        self.lock = threading.RLock()
        try:
            with self.lock:
                migrate(self.conn)
        except sqlite3.DatabaseError as exc:
            raise BadInput(f"{self.path}: not a bansos-edge database: {exc}") from None

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def transaction(self) -> _Tx:
        return _Tx(self)

    # -- records -------------------------------------------------------------
    def chain_head(self) -> tuple[int, str]:
        """(last seq, its hash), or the purge anchor, or (0, genesis)."""
        row = self.conn.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row:
            return int(row[0]), str(row[1])
        return self.chain_anchor()

    def chain_anchor(self) -> tuple[int, str]:
        """Where the stored chain starts: (seq before the first kept row, its hash)."""
        seq = self.get_meta("anchor_seq")
        return (int(seq), str(self.get_meta("anchor_hash"))) if seq else (0, GENESIS_HASH)

    def append(
        self,
        build: Callable[[int, str], dict[str, Any]],
        limits: OutboxLimits | None = None,
        *,
        head_key: SigningKey | None = None,
        override: bool = False,
    ) -> dict[str, Any]:
        """Build the next record from (seq, prev_hash) and commit it with its outbox row.

        `build` runs inside the write transaction (BEGIN IMMEDIATE), so what it reads
        (the served ledger, attempts) cannot change before COMMIT. With `head_key` the
        signed head checkpoint is rewritten in the same transaction. `override` marks a
        manual handover over an earlier one (the served ledger numbers it).
        """
        with self.lock, self.transaction():
            self._check_head_matches()
            if limits is not None:
                rows, size = self.conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox WHERE state != 'acked'"
                ).fetchone()
                if rows >= limits.max_rows or size >= limits.max_bytes:
                    raise OutboxFull(
                        f"outbox full: {rows} records / {size} bytes waiting for HQ "
                        f"(limits {limits.max_rows} / {limits.max_bytes}); connect to sync"
                    )
            seq, prev = self.chain_head()
            record = build(seq + 1, prev)
            body = canonical_json(record).decode("utf-8")
            self.conn.execute(
                "INSERT INTO records (seq, id, captured_at, kpm_id, programme, period, decision,"
                " hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record["seq"],
                    record["id"],
                    record["captured_at"],
                    record["kpm_id"],
                    record["programme"],
                    record["period"],
                    record["decision"],
                    record_hash(record),
                    body,
                ),
            )
            self.conn.execute(
                "INSERT INTO outbox (record_id, seq, state, bytes, created_at)"
                " VALUES (?, ?, 'pending', ?, ?)",
                (record["id"], record["seq"], len(body.encode("utf-8")), time.time()),
            )
            if record["decision"] in SERVED_DECISIONS:
                # the served ledger outlives purges: `already_served` must hold all period.
                # UNIQUE (kpm_id, programme, period, override): a second handover without
                # an override fails here and the whole record rolls back.
                number = 0
                if override:
                    row = self.conn.execute(
                        "SELECT COALESCE(MAX(override), -1) + 1 FROM served"
                        " WHERE kpm_id = ? AND programme = ? AND period = ?",
                        (record["kpm_id"], record["programme"], record["period"]),
                    ).fetchone()
                    number = max(1, int(row[0]))
                self.conn.execute(
                    "INSERT INTO served (record_id, kpm_id, programme, period, seq, device_id,"
                    " captured_at, decision, geo, geofence, override)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record["id"], record["kpm_id"], record["programme"], record["period"],
                        record["seq"], record["device_id"], record["captured_at"],
                        record["decision"],
                        None if record.get("geo") is None else json.dumps(record["geo"]),
                        record["geofence"], number,
                    ),
                )  # fmt: skip
            if record["decision"] in FAILED_DECISIONS:
                self.conn.execute(
                    "INSERT INTO attempts (officer_id, kpm_id, programme, period, used, last_seq)"
                    " VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (officer_id, kpm_id, programme,"
                    " period) DO UPDATE SET used = used + 1, last_seq = excluded.last_seq",
                    (
                        record["officer_id"], record["kpm_id"], record["programme"],
                        record["period"], record["seq"],
                    ),
                )  # fmt: skip
            # The head in meta lets `records verify` notice a deleted newest record,
            # which the chain alone cannot (its predecessor still links fine).
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('head_seq', ?), ('head_hash', ?)",
                (str(record["seq"]), record_hash(record)),
            )
            if head_key is not None:
                self._write_head(head_key, record["device_id"], record["seq"], record_hash(record))
            return record

    # -- signed head checkpoint ---------------------------------------------------
    def signed_head(self) -> dict[str, Any] | None:
        """The stored signed head (not checked here: see edge.integrity), or None."""
        text = self.get_meta("head_signed")
        if text is None:
            return None
        try:
            head = json.loads(text)
        except json.JSONDecodeError:
            return {"malformed": text[:80]}
        return head if isinstance(head, dict) else {"malformed": text[:80]}

    def _write_head(self, key: SigningKey, device_id: str, seq: int, head_hash: str) -> None:
        head = sign_head(key, device_id, seq, head_hash, time.time())
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('head_signed', ?)",
            (canonical_json(head).decode("utf-8"),),
        )

    def sign_current_head(self, key: SigningKey, device_id: str) -> dict[str, Any]:
        """Sign what the store holds now as its head (a new store, or an admin's decision)."""
        with self.lock, self.transaction():
            seq, head_hash = self.chain_head()
            self._write_head(key, device_id, seq, head_hash)
            self.conn.execute("DELETE FROM meta WHERE key = 'legacy_unsigned_head'")
        head = self.signed_head()
        assert head is not None
        return head

    def _check_head_matches(self) -> None:
        """Refuse to append when the chain no longer ends at the signed head (cheap: no
        signature check; the full check is edge.integrity at start and `records verify`)."""
        head = self.signed_head()
        if head is None:
            return
        seq, head_hash = self.chain_head()
        if head.get("seq") != seq or head.get("hash") != head_hash:
            raise StoreIntegrityError(
                f"{self.path}: the chain ends at seq {seq} but its signed head says "
                f"{head.get('seq')!r}: records were removed or replaced; nothing is appended "
                "(run `edge records verify`)"
            )

    def quick_check(self) -> str | None:
        """None when SQLite's `PRAGMA quick_check` says ok, else its first complaint."""
        try:
            with self.lock:
                rows = self.conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return str(exc)
        first = str(rows[0][0]) if rows else "no answer"
        return None if first == "ok" and len(rows) == 1 else first

    # -- attempts --------------------------------------------------------------------
    def attempts_used(self, officer_id: str, kpm_id: str, programme: str, period: str) -> int:
        """Failed face checks of this KPM, programme and period by this officer."""
        row = self.conn.execute(
            "SELECT used FROM attempts WHERE officer_id = ? AND kpm_id = ? AND programme = ?"
            " AND period = ?",
            (officer_id, kpm_id, programme, period),
        ).fetchone()
        return int(row[0]) if row else 0

    def iter_bodies(self) -> Iterator[tuple[int, str]]:
        """(seq, stored JSON text) in seq order, read in pages so memory stays flat."""
        last = -1
        while True:
            with self.lock:
                rows = self.conn.execute(
                    "SELECT seq, body FROM records WHERE seq > ? ORDER BY seq LIMIT 500", (last,)
                ).fetchall()
            if not rows:
                return
            for seq, body in rows:
                yield int(seq), str(body)
            last = int(rows[-1][0])

    def iter_rows(self) -> Iterator[tuple[int, str, str]]:
        """(seq, stored hash, stored JSON text) in seq order, paged; for auditing."""
        last = -1
        while True:
            with self.lock:
                rows = self.conn.execute(
                    "SELECT seq, hash, body FROM records WHERE seq > ? ORDER BY seq LIMIT 500",
                    (last,),
                ).fetchall()
            if not rows:
                return
            for seq, h, body in rows:
                yield int(seq), str(h), str(body)
            last = int(rows[-1][0])

    def expected_head(self) -> int:
        """The highest seq the store has ever committed (meta head or outbox), 0 if none."""
        head = self.get_meta("head_seq")
        row = self.conn.execute("SELECT MAX(seq) FROM outbox").fetchone()
        return max(int(head) if head else 0, int(row[0]) if row and row[0] is not None else 0)

    def iter_records(self) -> Iterator[dict[str, Any]]:
        for _seq, body in self.iter_bodies():
            yield json.loads(body)

    def get_record(self, record_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT body FROM records WHERE id = ?", (record_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def record_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def served(self, kpm_id: str, programme: str, period: str) -> bool:
        """Has this KPM already received this programme's aid this period (match or manual)?"""
        return self.served_by(kpm_id, programme, period) is not None

    def served_by(self, kpm_id: str, programme: str, period: str) -> dict[str, Any] | None:
        """The latest handover (match or manual) of this KPM/programme/period, from the
        purge-proof `served` ledger: record id, seq, device, time, decision, geo, geofence."""
        row = self.conn.execute(
            "SELECT record_id, seq, device_id, captured_at, decision, geo, geofence FROM served"
            " WHERE kpm_id = ? AND programme = ? AND period = ? ORDER BY seq DESC LIMIT 1",
            (kpm_id, programme, period),
        ).fetchone()
        if row is None:
            return None
        keys = ("record_id", "seq", "device_id", "captured_at", "decision", "geo", "geofence")
        out = dict(zip(keys, row, strict=True))
        out["geo"] = json.loads(out["geo"]) if out["geo"] else None
        return out

    # -- roster --------------------------------------------------------------
    def import_bundle(self, bundle: Bundle) -> int:
        """Store a verified bundle; its entries replace earlier ones for the same KPM and period."""
        with self.lock, self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO roster_bundles (bundle_id, issued_at, model, imported_at,"
                " entries, valid_from, valid_until) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    bundle.bundle_id,
                    bundle.issued_at,
                    bundle.model,
                    time.time(),
                    len(bundle.entries),
                    bundle.valid_from,
                    bundle.valid_until,
                ),
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO roster (kpm_id, programme, period, bundle_id, templates,"
                " place, template_sources) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.kpm_id,
                        e.programme,
                        e.period,
                        bundle.bundle_id,
                        json.dumps([b64(t) for t in e.templates]),
                        json.dumps(e.place) if e.place is not None else None,
                        json.dumps(list(e.template_sources)) if e.template_sources else None,
                    )
                    for e in bundle.entries
                ],
            )
        return len(bundle.entries)

    def roster_entries(self, kpm_id: str) -> list[RosterEntry]:
        """The KPM's entries, newest period first, each with its bundle's validity window."""
        rows = self.conn.execute(
            "SELECT r.kpm_id, r.programme, r.period, r.templates, r.place, r.template_sources,"
            " b.valid_from, b.valid_until, r.bundle_id FROM roster r"
            " LEFT JOIN roster_bundles b ON b.bundle_id = r.bundle_id WHERE r.kpm_id = ?"
            " ORDER BY r.period DESC, r.programme",
            (kpm_id,),
        ).fetchall()
        return [
            RosterEntry(
                r[0],
                r[1],
                r[2],
                tuple(unb64(t) for t in json.loads(r[3])),
                json.loads(r[4]) if r[4] else None,
                tuple(json.loads(r[5])) if r[5] else (),
                r[6],
                r[7],
                r[8],
            )
            # newest period first (as (year, month)), then programme: rows come programme-sorted
            for r in sorted(rows, key=lambda r: period_key(str(r[2])), reverse=True)
        ]

    def current_periods(self, now: float) -> dict[str, str]:
        """Per programme, the newest period among entries whose bundle window holds `now`
        (bundles without a window count as current): the period this kiosk is serving."""
        rows = self.conn.execute(
            "SELECT DISTINCT r.programme, r.period FROM roster r"
            " JOIN roster_bundles b ON b.bundle_id = r.bundle_id"
            " WHERE (b.valid_from IS NULL OR b.valid_from <= ?)"
            " AND (b.valid_until IS NULL OR b.valid_until > ?)",
            (now, now),
        ).fetchall()
        out: dict[str, str] = {}
        for programme, period in rows:  # compared as (year, month), not as text
            p, v = str(programme), str(period)
            if p not in out or period_key(v) > period_key(out[p]):
                out[p] = v
        return out

    def roster_summary(self) -> dict[str, Any]:
        entries = int(self.conn.execute("SELECT COUNT(*) FROM roster").fetchone()[0])
        row = self.conn.execute(
            "SELECT bundle_id, issued_at, model, valid_from, valid_until FROM roster_bundles"
            " ORDER BY imported_at DESC LIMIT 1"
        ).fetchone()
        return {
            "entries": entries,
            "bundle_id": row[0] if row else None,
            "issued_at": row[1] if row else None,
            "model": row[2] if row else None,
            "valid_from": format_utc(row[3]) if row and row[3] is not None else None,
            "valid_until": format_utc(row[4]) if row and row[4] is not None else None,
        }

    # -- events and meta -----------------------------------------------------
    def log_event(self, kind: str, **detail: Any) -> None:
        """An audit event (never biometric data: callers pass ids and reasons only)."""
        with self.lock:
            self.conn.execute(
                "INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)",
                (time.time(), kind, json.dumps(detail, sort_keys=True, default=str)),
            )

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT at, kind, detail FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [{"at": r[0], "kind": r[1], **json.loads(r[2])} for r in rows]

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.lock:
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
            )

    # -- retention -------------------------------------------------------------
    def purge_acked(self, acked_before: float) -> int:
        """Delete the oldest records that HQ acked before `acked_before`, keeping the chain anchored.

        Only a contiguous run from the lowest seq goes, so what stays still verifies
        from the anchor (the last purged seq and its hash), kept in meta.
        """
        with self.lock, self.transaction():
            rows = self.conn.execute(
                "SELECT r.seq, r.hash, o.state, o.acked_at FROM records r"
                " JOIN outbox o ON o.record_id = r.id ORDER BY r.seq LIMIT 5000"
            ).fetchall()
            last: tuple[int, str] | None = None
            for seq, h, state, acked_at in rows:
                if state != "acked" or acked_at is None or acked_at >= acked_before:
                    break
                last = (int(seq), str(h))
            if last is None:
                return 0
            n = self.conn.execute("DELETE FROM outbox WHERE seq <= ?", (last[0],)).rowcount
            self.conn.execute("DELETE FROM records WHERE seq <= ?", (last[0],))
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('anchor_seq', ?), ('anchor_hash', ?)",
                (str(last[0]), last[1]),
            )
            return int(n)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (re-entrant per store)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.outer = False

    def __enter__(self) -> _Tx:
        self.store.lock.acquire()
        try:
            self.outer = not self.store.conn.in_transaction
            if self.outer:
                self.store.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            # BEGIN can fail (database locked past the busy timeout): __exit__ will not
            # run, so release the lock here or every other thread would hang on it.
            self.store.lock.release()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self.outer:
                self.store.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store.lock.release()
