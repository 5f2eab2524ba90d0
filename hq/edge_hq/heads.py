"""Signed heads at HQ: the newest (seq, hash) each kiosk signed, from its retained status.

A kiosk publishes its chain's signed head (edge.records.sign_head) in the status it
retains on `kiosk/<id>/status`. HQ keeps the highest one it has seen per registered
device (never going back), so its report can flag a device whose stored records stop
short of what the kiosk once said it held: a missing tail (records lost or deleted on
the kiosk before they were sent). A head that is malformed, unsigned, signed by another
key or for another device is ignored and counted, never stored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from nacl.signing import VerifyKey

from edge.records import RecordInvalid, canonical_json, check_head
from edge_hq.db import Database

log = logging.getLogger(__name__)
MAX_STATUS_BYTES = 64 * 1024


def status_subscription(share_group: str, prefix: str) -> str:
    return f"$share/{share_group}/{prefix}/+/status"


def status_device(topic: str, prefix: str) -> str | None:
    """The <id> of `<prefix>/<id>/status`, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == prefix and parts[2] == "status" and parts[1]:
        return parts[1]
    return None


def head_from_status(payload: bytes) -> Any:
    """The status document's `head` (None when absent); ValueError when not a status."""
    if len(payload) > MAX_STATUS_BYTES:
        raise ValueError("status too large")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("status is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("status is not a JSON object")
    return doc.get("head")


def record_head(
    db: Database,
    device_id: str,
    head: Any,
    lookup_key: Callable[[str], VerifyKey | None],
    now: float | None = None,
) -> str:
    """Store `head` if it is good and newer: 'stored', 'older', 'unknown device' or why bad."""
    key = lookup_key(device_id)
    if key is None:
        return "unknown device"
    try:
        good = check_head(head, key, device_id)
    except RecordInvalid as exc:
        return str(exc)
    ts = time.time() if now is None else now
    with db.tx():
        row = db.one("SELECT seq FROM device_heads WHERE device_id = ?", (device_id,))
        if row is not None and int(row[0]) >= good["seq"]:
            return "older"
        body = canonical_json(good).decode("utf-8")
        if row is None:
            db.execute(
                "INSERT INTO device_heads (device_id, seq, hash, signed_at, received_at, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (device_id, good["seq"], good["hash"], good["at"], ts, body),
            )
        else:
            db.execute(
                "UPDATE device_heads SET seq = ?, hash = ?, signed_at = ?, received_at = ?,"
                " body = ? WHERE device_id = ?",
                (good["seq"], good["hash"], good["at"], ts, body, device_id),
            )
    return "stored"


def handle_status(
    db: Database,
    topic: str,
    payload: bytes,
    prefix: str,
    lookup_key: Callable[[str], VerifyKey | None],
) -> str:
    """One status message from ingest: never raises (a bad one is logged and skipped)."""
    device = status_device(topic, prefix)
    if device is None:
        return "not a status topic"
    try:
        head = head_from_status(payload)
    except ValueError as exc:
        log.warning("status from %s ignored: %s", device, exc)
        return str(exc)
    if head is None:
        return "no head"  # an offline will, or a kiosk from before signed heads
    try:
        verdict = record_head(db, device, head, lookup_key)
    except Exception as exc:  # the database: the next status brings the head again
        log.warning("storing the head of %s failed: %s", device, exc)
        return f"not stored: {type(exc).__name__}"
    if verdict not in ("stored", "older"):
        log.warning("signed head from %s refused: %s", device, verdict)
    return verdict


def heads_by_device(db: Database) -> dict[str, dict[str, Any]]:
    return {
        str(d): {"seq": int(seq), "hash": str(h), "signed_at": str(at)}
        for d, seq, h, at in db.rows("SELECT device_id, seq, hash, signed_at FROM device_heads")
    }


def missing_tail(last_seq: int, head: dict[str, Any] | None) -> list[int] | None:
    """[first, last] seqs the kiosk signed a head for but HQ does not hold, or None."""
    if head is None or int(head["seq"]) <= last_seq:
        return None
    return [last_seq + 1, int(head["seq"])]
