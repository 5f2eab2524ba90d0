"""Roster bundles and their entries: import, the KPM's entries, the periods being served."""

from __future__ import annotations

import json
import time
from typing import Any

from bansos_contract.utc import iso_s as format_utc
from edge.keys import b64, unb64
from edge.period import period_key
from edge.roster import Bundle, RosterEntry
from edge.store.db import Db


class Roster:
    def __init__(self, db: Db) -> None:
        self.db = db

    def import_bundle(self, bundle: Bundle) -> int:
        """Store a verified bundle; its entries replace earlier ones for the same KPM and period."""
        with self.db.transaction():
            self.db.conn.execute(
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
            self.db.conn.executemany(
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

    def entries(self, kpm_id: str) -> list[RosterEntry]:
        """The KPM's entries, newest period first, each with its bundle's validity window."""
        with self.db.lock:
            rows = self.db.conn.execute(
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
        with self.db.lock:
            rows = self.db.conn.execute(
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

    def summary(self) -> dict[str, Any]:
        with self.db.lock:
            entries = int(self.db.conn.execute("SELECT COUNT(*) FROM roster").fetchone()[0])
            row = self.db.conn.execute(
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

    def newest_imported(self) -> str | None:
        """The most recently imported bundle id."""
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT bundle_id FROM roster_bundles ORDER BY imported_at DESC LIMIT 1"
            ).fetchone()
        return None if row is None else str(row[0])

    def issued(self) -> list[tuple[str, str]]:
        """(issued_at as stored, bundle_id) of every bundle imported."""
        with self.db.lock:
            rows = self.db.conn.execute(
                "SELECT issued_at, bundle_id FROM roster_bundles"
            ).fetchall()
        return [(str(i), str(b)) for i, b in rows]

    def in_force(self, bundle_id: str, entries: int) -> bool:
        """Is this bundle imported and does every one of its `entries` still come from it?"""
        with self.db.lock:
            known = self.db.conn.execute(
                "SELECT 1 FROM roster_bundles WHERE bundle_id = ?", (bundle_id,)
            ).fetchone()
            if not known:
                return False
            row = self.db.conn.execute(
                "SELECT COUNT(*) FROM roster WHERE bundle_id = ?", (bundle_id,)
            ).fetchone()
        return int(row[0]) == entries
