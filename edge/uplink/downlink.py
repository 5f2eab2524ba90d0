"""Roster bundles arriving on `kiosk/<id>/roster`: verify before import, refuse with a reason.

A bundle is imported only if HQ's key signed it for this kiosk's embedder (and this kiosk,
when targeted). Anything else, including payloads that are not JSON at all, is refused,
logged and recorded as an event; the caller shows the outcome in the status.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from nacl.signing import VerifyKey

from edge.errors import BadInput
from edge.roster import RosterRefused, verify_bundle
from edge.store import Store

log = logging.getLogger(__name__)

MAX_ROSTER_BYTES = 8 * 1024 * 1024  # = message_size_limit in deploy/mosquitto


@dataclass(frozen=True)
class RosterOutcome:
    """imported / duplicate (already held) / refused (with reason) / error (verified, not stored)."""

    kind: str
    bundle_id: str | None = None
    entries: int = 0
    reason: str = ""


def receive_roster(
    store: Store,
    payload: bytes,
    source: str,
    hq_key: VerifyKey | None,
    expected_model: str,
    device_id: str,
) -> RosterOutcome:
    """Verify and import one roster payload; never raises."""
    try:
        if len(payload) > MAX_ROSTER_BYTES:
            raise RosterRefused(f"{source}: bundle of {len(payload)} bytes is too large")
        if hq_key is None:
            raise RosterRefused(f"{source}: no HQ signing key configured to verify it")
        try:
            obj = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise RosterRefused(f"{source}: not UTF-8 JSON") from None
        bundle = verify_bundle(obj, hq_key, expected_model, device_id, source)
    except Exception as exc:  # RosterRefused / BadInput say why; anything else is malformed
        reason = str(exc) if isinstance(exc, BadInput) else f"{source}: malformed bundle"
        if not isinstance(exc, BadInput):
            log.debug("roster parse error", exc_info=True)
        log.warning("roster refused: %s", reason)
        store.log_event("roster_refused", reason=reason, source="mqtt")
        return RosterOutcome("refused", reason=reason)
    with store.lock:
        known = store.conn.execute(
            "SELECT 1 FROM roster_bundles WHERE bundle_id = ?", (bundle.bundle_id,)
        ).fetchone()
    if known:  # the retained bundle again, after a reconnect
        log.debug("roster %s already imported", bundle.bundle_id)
        return RosterOutcome("duplicate", bundle.bundle_id)
    try:
        n = store.import_bundle(bundle)
    except Exception as exc:  # e.g. disk full: say so, do not drop the link over it
        log.error("roster %s verified but not stored: %s", bundle.bundle_id, exc)
        return RosterOutcome("error", bundle.bundle_id, reason=f"not stored: {exc}")
    store.log_event("roster_imported", bundle_id=bundle.bundle_id, entries=n, source="mqtt")
    log.info("roster %s imported: %d entries", bundle.bundle_id, n)
    return RosterOutcome("imported", bundle.bundle_id, n)


def current_bundle(store: Store) -> str | None:
    """The most recently imported bundle id, for the status."""
    with store.lock:
        row = store.conn.execute(
            "SELECT bundle_id FROM roster_bundles ORDER BY imported_at DESC LIMIT 1"
        ).fetchone()
    return None if row is None else str(row[0])
