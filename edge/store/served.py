"""The served ledger: once per KPM, programme and period, stated here and nowhere else.

`UNIQUE (kpm_id, programme, period, override)`: a second handover without an override
fails on insert and rolls back the whole record. The ledger outlives purges, so
`already_served` holds all period even after retention deleted the record itself.
"""

from __future__ import annotations

import json
from typing import Any

from edge.store.db import Db

SERVED_DECISIONS = ("match", "manual")


class Served:
    def __init__(self, db: Db) -> None:
        self.db = db

    def by(self, kpm_id: str, programme: str, period: str) -> dict[str, Any] | None:
        """The latest handover (match or manual) of this KPM/programme/period: record id,
        seq, device, time, decision, geo, geofence."""
        with self.db.lock:
            row = self.db.conn.execute(
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

    def add(self, record: dict[str, Any], override: bool) -> None:
        """Enter a handover (inside the record's transaction); other decisions are no-ops.

        `override` numbers a manual handover over an earlier one (1, 2, ...).
        """
        if record["decision"] not in SERVED_DECISIONS:
            return
        number = 0
        if override:
            row = self.db.conn.execute(
                "SELECT COALESCE(MAX(override), -1) + 1 FROM served"
                " WHERE kpm_id = ? AND programme = ? AND period = ?",
                (record["kpm_id"], record["programme"], record["period"]),
            ).fetchone()
            number = max(1, int(row[0]))
        self.db.conn.execute(
            "INSERT INTO served (record_id, kpm_id, programme, period, seq, device_id,"
            " captured_at, decision, geo, geofence, override)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record["id"], record["kpm_id"], record["programme"], record["period"],
                record["seq"], record["device_id"], record["captured_at"], record["decision"],
                None if record.get("geo") is None else json.dumps(record["geo"]),
                record["geofence"], number,
            ),
        )  # fmt: skip
