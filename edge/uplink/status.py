"""The retained status payload on `kiosk/<id>/status`, built from plain data (no I/O).

HQ's fleet view reads it: online or not, how much is waiting, since when, the last sync,
roster state (including a refused bundle and why), plus GPS / model / clock / camera info
the daemon supplies. Never biometric data.
"""

from __future__ import annotations

import json
from typing import Any

from bansos_contract.utc import iso_ms as utc_iso
from edge.uplink.outbox import OutboxStats

STATUS_VERSION = 1


def _iso(ts: float | None) -> str | None:
    return None if ts is None else utc_iso(ts)


def online_status(
    device_id: str,
    stats: OutboxStats,
    roster: dict[str, Any],
    extra: dict[str, Any],
    now: float,
    rejected: int = 0,
) -> dict[str, Any]:
    """The `online` document; `extra` keys cannot overwrite the uplink's own keys."""
    doc: dict[str, Any] = {k: v for k, v in extra.items()}
    doc.update(
        {
            "v": STATUS_VERSION,
            "state": "online",
            "device_id": device_id,
            "at": utc_iso(now),
            "queue": {
                "depth": stats.depth,
                "pending": stats.pending,
                "sent": stats.sent,
                "bytes": stats.depth_bytes,
                "oldest_pending_age_s": stats.oldest_pending_age_s,
                "oldest_sent_age_s": stats.oldest_sent_age_s,
                "full": stats.full,
                "rejected_by_broker": rejected,
            },
            "accepting": not stats.full,
            "refusing_reason": stats.full_reason or None,
            "last_sync": _iso(stats.last_sync),
            "roster": roster,
        }
    )
    return doc


def offline_status(device_id: str) -> dict[str, Any]:
    """The last will (and the clean-shutdown status): the broker publishes it when we vanish."""
    return {"v": STATUS_VERSION, "state": "offline", "device_id": device_id}


def encode(doc: dict[str, Any]) -> bytes:
    """Compact, sorted JSON (stable bytes, so a change check can compare payloads)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def change_key(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What counts as a change worth publishing at once (not every queue tick)."""
    q = doc.get("queue", {})
    return (
        doc.get("state"),
        q.get("full"),
        q.get("depth", 0) == 0,
        json.dumps(doc.get("roster"), sort_keys=True, default=str),
    )
