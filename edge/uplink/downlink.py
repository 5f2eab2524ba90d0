"""Roster bundles arriving on `kiosk/<id>/roster`: verify before import, refuse with a reason.

A bundle is imported only if HQ's key signed it for this kiosk's embedder (and this kiosk,
when targeted). Anything else, including payloads that are not JSON at all, is refused,
logged and recorded as an event; the caller shows the outcome in the status.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from nacl.signing import VerifyKey

from bansos_contract.utc import iso_s as format_utc
from bansos_contract.utc import parse as parse_utc
from edge.errors import BadInput
from edge.roster import Bundle, RosterRefused, verify_bundle
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
    now: float | None = None,
) -> RosterOutcome:
    """Verify and import one roster payload; never raises.

    Bundles are monotonic: one issued before the newest this kiosk imported, or whose
    window has ended, is refused with the reason (a replayed old bundle must not replace
    the current one). The newest itself is always taken again: when its entries are no
    longer all in force, re-publishing it restores them.
    """
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
    refused = _stale(store, bundle, source, time.time() if now is None else now)
    if refused:
        log.warning("roster refused: %s", refused)
        store.log_event("roster_refused", reason=refused, source="mqtt", bundle_id=bundle.bundle_id)
        return RosterOutcome("refused", bundle.bundle_id, reason=refused)
    if _in_force(store, bundle):  # the retained bundle again, after a reconnect
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


def _newest_issued(store: Store) -> tuple[float, str] | None:
    """(issued_at, bundle_id) of the newest bundle imported so far (unreadable times skipped)."""
    with store.lock:
        rows = store.conn.execute("SELECT issued_at, bundle_id FROM roster_bundles").fetchall()
    best: tuple[float, str] | None = None
    for issued, bid in rows:
        try:
            t = parse_utc(issued)
        except ValueError:
            continue
        if best is None or t > best[0]:
            best = (t, str(bid))
    return best


def _stale(store: Store, bundle: Bundle, source: str, now: float) -> str | None:
    """Why this verified bundle must not be imported (older or expired), or None."""
    try:
        issued = parse_utc(bundle.issued_at)
    except ValueError:
        return f"{source}: issued_at: {bundle.issued_at[:40]!r} is not a UTC time; cannot order it"
    if bundle.valid_until is not None and now >= bundle.valid_until:
        return (
            f"{source}: bundle {bundle.bundle_id} expired at {format_utc(bundle.valid_until)}"
            f" (now {format_utc(now)})"
        )
    newest = _newest_issued(store)
    if newest is not None and issued < newest[0]:
        return (
            f"{source}: bundle {bundle.bundle_id} issued {bundle.issued_at} is older than"
            f" {newest[1]} issued {format_utc(newest[0])}, already imported"
        )
    return None


def _in_force(store: Store, bundle: Bundle) -> bool:
    """Is this bundle imported and does every one of its entries still come from it?"""
    with store.lock:
        known = store.conn.execute(
            "SELECT 1 FROM roster_bundles WHERE bundle_id = ?", (bundle.bundle_id,)
        ).fetchone()
        if not known:
            return False
        row = store.conn.execute(
            "SELECT COUNT(*) FROM roster WHERE bundle_id = ?", (bundle.bundle_id,)
        ).fetchone()
    return int(row[0]) == len(bundle.entries)
