"""Failed face checks per officer, KPM, programme and period (the limit survives restarts)."""

from __future__ import annotations

from typing import Any

from edge.records import FAILED_DECISIONS
from edge.store.db import Db


class Attempts:
    def __init__(self, db: Db) -> None:
        self.db = db

    def used(self, officer_id: str, kpm_id: str, programme: str, period: str) -> int:
        """Failed face checks of this KPM, programme and period by this officer."""
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT used FROM attempts WHERE officer_id = ? AND kpm_id = ? AND programme = ?"
                " AND period = ?",
                (officer_id, kpm_id, programme, period),
            ).fetchone()
        return int(row[0]) if row else 0

    def count(self, record: dict[str, Any]) -> None:
        """Count a failed face decision (inside the record's transaction); others are no-ops."""
        if record["decision"] not in FAILED_DECISIONS:
            return
        self.db.conn.execute(
            "INSERT INTO attempts (officer_id, kpm_id, programme, period, used, last_seq)"
            " VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (officer_id, kpm_id, programme,"
            " period) DO UPDATE SET used = used + 1, last_seq = excluded.last_seq",
            (
                record["officer_id"], record["kpm_id"], record["programme"],
                record["period"], record["seq"],
            ),
        )  # fmt: skip
