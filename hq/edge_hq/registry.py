"""The device registry: which kiosk public keys HQ trusts, in the HQ database.

Kept in the database (not a file) so every ingest worker sees a newly added kiosk
without a restart, and so adding one is a committed, auditable row.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from nacl.signing import VerifyKey

from edge.errors import BadInput
from edge.keys import decode_public_key, device_id_for
from edge_hq.db import Database

_MISS_RECHECK_S = 5.0


@dataclass(frozen=True)
class Device:
    device_id: str
    public_key: str
    label: str
    added_at: float


def add_device(db: Database, device_id: str, public_key: str, label: str = "") -> Device:
    """Register a kiosk; its id must be the one derived from its key (they cannot drift)."""
    try:
        raw = decode_public_key(public_key)
    except ValueError as exc:
        raise BadInput(f"PUBKEY: {exc}") from None
    expected = device_id_for(VerifyKey(raw))
    if device_id != expected:
        raise BadInput(f"ID: {device_id!r} does not belong to this key (its id is {expected})")
    key_text = public_key.strip()
    with db.tx():
        row = db.one("SELECT public_key FROM devices WHERE device_id = ?", (device_id,))
        if row is not None:
            if row[0] != key_text:
                raise BadInput(f"ID: {device_id} is registered with another key")
        else:
            db.execute(
                "INSERT INTO devices (device_id, public_key, label, added_at) VALUES (?, ?, ?, ?)",
                (device_id, key_text, label, time.time()),
            )
    found = get_device(db, device_id)
    assert found is not None
    return found


def get_device(db: Database, device_id: str) -> Device | None:
    row = db.one(
        "SELECT device_id, public_key, label, added_at FROM devices WHERE device_id = ?",
        (device_id,),
    )
    return Device(str(row[0]), str(row[1]), str(row[2]), float(row[3])) if row else None


def list_devices(db: Database) -> list[Device]:
    rows = db.rows("SELECT device_id, public_key, label, added_at FROM devices ORDER BY device_id")
    return [Device(str(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]


class KeyCache:
    """Verify keys by device id for ingest; a miss is re-read at most every few seconds."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._keys: dict[str, VerifyKey] = {}
        self._misses: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, device_id: str) -> VerifyKey | None:
        with self._lock:
            key = self._keys.get(device_id)
            if key is not None:
                return key
            last = self._misses.get(device_id)
            if last is not None and time.monotonic() - last < _MISS_RECHECK_S:
                return None
        device = get_device(self.db, device_id)
        with self._lock:
            if device is None:
                self._misses[device_id] = time.monotonic()
                return None
            key = VerifyKey(decode_public_key(device.public_key))
            self._keys[device_id] = key
            self._misses.pop(device_id, None)
            return key
