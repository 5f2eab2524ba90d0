"""The officers' desk of the kiosk screen: the officers file, sign-in and sign-out, sessions.

One lock guards the officer book (PIN failures, lock-outs, sessions); the book is re-read
when the officers file or the ui config changes, keeping failures and the sessions of
officers still listed. Sign-ins and refusals are logged as store events (no PINs).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from edge.ui.host import KioskHost
from edge.ui.officers import ID_RE, OfficerBook, OfficersFileError, Session, load_officers
from edge.ui.reply import Reply, err

log = logging.getLogger(__name__)


class OfficerDesk:
    """Who is signed in on this kiosk; the screen asks it for a token's session."""

    def __init__(self, host: KioskHost, clock: Callable[[], float]) -> None:
        self.host = host
        self.clock = clock
        self.lock = threading.Lock()
        self._book: OfficerBook | None = None
        self._book_error: str | None = None
        self._book_key: tuple[str, float] | None = None

    def book_state(self) -> tuple[OfficerBook | None, str | None]:
        """The book (None if unusable) and why it is unusable."""
        with self.lock:
            return self.book(), self._book_error

    def session(self, token: str | None, touch: bool) -> Session | None:
        """The live session of `token` (touching it extends its idle time), else None."""
        with self.lock:
            book = self.book()
            return book.session(token, self.clock(), touch) if book is not None else None

    def book(self) -> OfficerBook | None:
        """The officers list, re-read when the file or ui config changes; None if unusable."""
        ui = self.host.ui_config()
        path = ui.officers_file
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = -1.0
        key = (f"{path}|{ui.pin_lockout_after}|{ui.lockout_s}|{ui.session_idle_s}", mtime)
        if key != self._book_key:
            self._book_key = key
            try:
                officers = load_officers(path)
            except OfficersFileError as exc:
                log.error("kiosk sign-in unavailable: %s", exc)
                self._book, self._book_error = None, str(exc)
                return None
            old = self._book
            self._book = OfficerBook(
                officers, ui.pin_lockout_after, ui.lockout_s, ui.session_idle_s
            )
            self._book_error = None
            if old is not None:
                self._book.failures = old.failures
                self._book.sessions = {
                    t: s for t, s in old.sessions.items() if s.officer.id in officers
                }
        return self._book

    def sign_in(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            book = self.book()
            if book is None:
                return err(503, "signin_unavailable", f"sign-in unavailable: {self._book_error}")
            now = self.clock()
            if "badge" in body:
                badge = body.get("badge")
                if not isinstance(badge, str) or not 1 <= len(badge) <= 200:
                    return err(400, "bad_badge", "badge: expected the badge's QR text")
                result = book.sign_in_badge(badge, now)
                officer_id = None
            else:
                officer_id, pin = body.get("officer_id"), body.get("pin")
                if not isinstance(officer_id, str) or not ID_RE.match(officer_id):
                    return err(400, "bad_officer_id", "officer_id: expected the officer's id")
                if not isinstance(pin, str) or len(pin) > 64:
                    return err(400, "bad_pin", "pin: expected 4 to 8 digits")
                result = book.sign_in_pin(officer_id, pin, now)
        if result.event is not None:
            self.host.store.log_event(result.event, officer_id=officer_id)
        if result.session is None:
            key = {401: "wrong_pin", 423: "locked"}.get(result.code, "refused")
            if "badge" in body:
                key = "unknown_badge" if result.code == 401 else key
            return err(
                result.code,
                key,
                result.error or "refused",
                attempts_left=result.attempts_left,
                locked_for_s=result.locked_for_s,
            )
        s = result.session
        self.host.store.log_event("officer_signed_in", officer_id=s.officer.id)
        return Reply(200, {"token": s.token, "officer_id": s.officer.id, "name": s.officer.name})

    def sign_out(self, token: str | None) -> Reply:
        with self.lock:
            book = self.book()
            done = book.sign_out(token) if book is not None else False
        return Reply(200, {"signed_out": done})
