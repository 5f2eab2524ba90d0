"""Roster bundles arriving on `kiosk/<id>/roster`: verify before import, refuse with a reason.

The daemon's handler for the uplink's roster messages (the uplink only carries the bytes):
a bundle is imported only if HQ's key signed it for this kiosk's embedder (and this kiosk,
when targeted). Anything else, including payloads that are not JSON at all, is refused,
logged and recorded as an event; `RosterInbox.status()` shows the outcome in the status.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from nacl.signing import VerifyKey

from bansos_contract.utc import iso_ms as utc_iso
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
    return store.roster.newest_imported()


def _newest_issued(store: Store) -> tuple[float, str] | None:
    """(issued_at, bundle_id) of the newest bundle imported so far (unreadable times skipped)."""
    best: tuple[float, str] | None = None
    for issued, bid in store.roster.issued():
        try:
            t = parse_utc(issued)
        except ValueError:
            continue
        if best is None or t > best[0]:
            best = (t, bid)
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
    return store.roster.in_force(bundle.bundle_id, len(bundle.entries))


class RosterInbox:
    """Receives the roster topic's payloads for one kiosk and keeps what the status shows."""

    def __init__(
        self, store: Store, hq_key: VerifyKey | None, expected_model: str, device_id: str
    ) -> None:
        self.store = store
        self.hq_key = hq_key
        self.expected_model = expected_model
        self.device_id = device_id
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"bundle_id": current_bundle(store), "last_refused": None}
        self._counts = {"roster_imported": 0, "roster_refused": 0}

    def receive(self, payload: bytes, source: str) -> None:
        """One payload from `source` (the topic); an empty one is a cleared retained roster."""
        if not payload:
            return
        out = receive_roster(
            self.store, payload, source, self.hq_key, self.expected_model, self.device_id
        )
        with self._lock:
            if out.kind == "refused":
                self._counts["roster_refused"] += 1
                self._state["last_refused"] = {"at": utc_iso(time.time()), "reason": out.reason}
            elif out.kind == "error":
                self._state["last_error"] = f"{out.bundle_id}: {out.reason}"
            elif out.kind == "imported":
                self._counts["roster_imported"] += 1
                self._state = {
                    "bundle_id": out.bundle_id,
                    "entries": out.entries,
                    "last_refused": None,
                }

    def status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._state)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
