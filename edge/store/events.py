"""The audit log: ids and reasons only, never biometric data."""

from __future__ import annotations

import json
import time
from typing import Any

from edge.store.db import Db


class Events:
    def __init__(self, db: Db) -> None:
        self.db = db

    def log(self, kind: str, **detail: Any) -> None:
        """An audit event (callers pass ids and reasons only)."""
        with self.db.lock:
            self.db.conn.execute(
                "INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)",
                (time.time(), kind, json.dumps(detail, sort_keys=True, default=str)),
            )

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.lock:
            rows = self.db.conn.execute(
                "SELECT at, kind, detail FROM events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [{"at": r[0], "kind": r[1], **json.loads(r[2])} for r in rows]
