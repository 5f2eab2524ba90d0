"""The signed records and their chain: append (with the record's outbox, served-ledger and
attempt rows in one transaction), the signed head checkpoint, reads, and the purge.

Purge keeps the chain verifiable: only a contiguous run of the oldest acked records goes,
and `meta.anchor_seq`/`anchor_hash` say where the kept chain starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from nacl.signing import SigningKey

from edge.errors import EXIT_MISSING, EdgeError
from edge.records import GENESIS_HASH, canonical_json, record_hash, sign_head
from edge.store.attempts import Attempts
from edge.store.db import Db
from edge.store.outbox import OutboxLimits, OutboxRows
from edge.store.served import Served


class StoreIntegrityError(EdgeError):
    """The store is not the one this kiosk committed to (truncated, lost, corrupted):
    nothing may be appended until an admin decides (see edge/integrity.py)."""

    exit_code = EXIT_MISSING


class Records:
    def __init__(self, db: Db, outbox: OutboxRows, served: Served, attempts: Attempts) -> None:
        self.db = db
        self.outbox = outbox
        self.served = served
        self.attempts = attempts

    # -- the chain -------------------------------------------------------------------
    def chain_head(self) -> tuple[int, str]:
        """(last seq, its hash), or the purge anchor, or (0, genesis)."""
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        if row:
            return int(row[0]), str(row[1])
        return self.chain_anchor()

    def chain_anchor(self) -> tuple[int, str]:
        """Where the stored chain starts: (seq before the first kept row, its hash)."""
        seq = self.db.get_meta("anchor_seq")
        return (int(seq), str(self.db.get_meta("anchor_hash"))) if seq else (0, GENESIS_HASH)

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
        with self.db.transaction():
            self._check_head_matches()
            if limits is not None:
                self.outbox.check_room(limits)
            seq, prev = self.chain_head()
            record = build(seq + 1, prev)
            body = canonical_json(record).decode("utf-8")
            h = record_hash(record)
            self.db.conn.execute(
                "INSERT INTO records (seq, id, captured_at, kpm_id, programme, period, decision,"
                " hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record["seq"], record["id"], record["captured_at"], record["kpm_id"],
                    record["programme"], record["period"], record["decision"], h, body,
                ),
            )  # fmt: skip
            self.outbox.add(record["id"], record["seq"], len(body.encode("utf-8")))
            self.served.add(record, override)
            self.attempts.count(record)
            # The head in meta lets `records verify` notice a deleted newest record,
            # which the chain alone cannot (its predecessor still links fine).
            self.db.set_meta(("head_seq", str(record["seq"])), ("head_hash", h))
            if head_key is not None:
                self._write_head(head_key, record["device_id"], record["seq"], h)
            return record

    # -- signed head checkpoint ---------------------------------------------------
    def signed_head(self) -> dict[str, Any] | None:
        """The stored signed head (not checked here: see edge.integrity), or None."""
        text = self.db.get_meta("head_signed")
        if text is None:
            return None
        try:
            head = json.loads(text)
        except json.JSONDecodeError:
            return {"malformed": text[:80]}
        return head if isinstance(head, dict) else {"malformed": text[:80]}

    def _write_head(self, key: SigningKey, device_id: str, seq: int, head_hash: str) -> None:
        head = sign_head(key, device_id, seq, head_hash, time.time())
        self.db.set_meta(("head_signed", canonical_json(head).decode("utf-8")))

    def sign_current_head(self, key: SigningKey, device_id: str) -> dict[str, Any]:
        """Sign what the store holds now as its head (a new store, or an admin's decision)."""
        with self.db.transaction():
            seq, head_hash = self.chain_head()
            self._write_head(key, device_id, seq, head_hash)
            self.db.delete_meta("legacy_unsigned_head")
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
                f"{self.db.path}: the chain ends at seq {seq} but its signed head says "
                f"{head.get('seq')!r}: records were removed or replaced; nothing is appended "
                "(run `edge records verify`)"
            )

    def expected_head(self) -> int:
        """The highest seq the store has ever committed (meta head or outbox), 0 if none."""
        head = self.db.get_meta("head_seq")
        return max(int(head) if head else 0, self.outbox.max_seq())

    # -- reads -----------------------------------------------------------------------
    def last_decision(
        self, kpm_id: str, programme: str, period: str, decisions: tuple[str, ...]
    ) -> str | None:
        """The id of the newest record with one of `decisions` for this KPM and period."""
        marks = ", ".join("?" * len(decisions))
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT id FROM records WHERE kpm_id = ? AND programme = ? AND period = ?"
                f" AND decision IN ({marks}) ORDER BY seq DESC LIMIT 1",  # only ? placeholders
                (kpm_id, programme, period, *decisions),
            ).fetchone()
        return None if row is None else str(row[0])

    def refused_since(self, kpm_id: str, programme: str, period: str, seq: int) -> bool:
        """Whether an `already_served` for this KPM and period was recorded after record `seq`."""
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT 1 FROM records WHERE kpm_id = ? AND programme = ? AND period = ?"
                " AND decision = 'already_served' AND seq > ? LIMIT 1",
                (kpm_id, programme, period, seq),
            ).fetchone()
        return row is not None

    def iter_bodies(self) -> Iterator[tuple[int, str]]:
        """(seq, stored JSON text) in seq order, read in pages so memory stays flat."""
        for seq, _h, body in self.iter_rows():
            yield seq, body

    def iter_rows(self) -> Iterator[tuple[int, str, str]]:
        """(seq, stored hash, stored JSON text) in seq order, paged; for auditing."""
        last = -1
        while True:
            with self.db.lock:
                rows = self.db.conn.execute(
                    "SELECT seq, hash, body FROM records WHERE seq > ? ORDER BY seq LIMIT 500",
                    (last,),
                ).fetchall()
            if not rows:
                return
            for seq, h, body in rows:
                yield int(seq), str(h), str(body)
            last = int(rows[-1][0])

    def get(self, record_id: str) -> dict[str, Any] | None:
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT body FROM records WHERE id = ?", (record_id,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def count(self) -> int:
        with self.db.lock:
            return int(self.db.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def newest(self, limit: int) -> list[dict[str, Any]]:
        """The newest records' columns with their outbox state (`purged` once the row is gone)."""
        with self.db.lock:
            rows = self.db.conn.execute(
                "SELECT r.seq, r.id, r.captured_at, r.kpm_id, r.programme, r.period, r.decision,"
                " COALESCE(o.state, 'purged') FROM records r"
                " LEFT JOIN outbox o ON o.record_id = r.id ORDER BY r.seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        keys = ("seq", "id", "captured_at", "kpm_id", "programme", "period", "decision", "outbox")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- retention -------------------------------------------------------------
    def purge_acked(self, acked_before: float) -> int:
        """Delete the oldest records that HQ acked before `acked_before`, keeping the chain anchored.

        Only a contiguous run from the lowest seq goes, so what stays still verifies
        from the anchor (the last purged seq and its hash), kept in meta.
        """
        with self.db.transaction():
            rows = self.db.conn.execute(
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
            n = self.db.conn.execute("DELETE FROM outbox WHERE seq <= ?", (last[0],)).rowcount
            self.db.conn.execute("DELETE FROM records WHERE seq <= ?", (last[0],))
            self.db.set_meta(("anchor_seq", str(last[0])), ("anchor_hash", last[1]))
            return int(n)
