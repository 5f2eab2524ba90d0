"""The kiosk screen's backend: every endpoint the page calls, without HTTP.

The API server hands each /v1 call here as (method, path, token, body); this module
checks the session, asks the pure parts (officers, eligibility, guidance, scan) and the
running kiosk through `KioskHost` (edge/ui/host.py: camera, pipeline, verifier, store
reads), and answers a Reply. Sign-in, sign-out and sessions are the officers' desk
(edge/ui/desk.py). The endpoints are the table in edge/ui/routes.py. Nothing returned
carries biometric data except the small preview JPEG of the live frame.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import numpy as np

from bansos_contract.utc import iso_s as format_utc
from edge.eligibility import check_eligibility
from edge.roster import RosterEntry
from edge.ui.desk import OfficerDesk
from edge.ui.guidance import guidance_code
from edge.ui.host import KioskHost, NotReady
from edge.ui.officers import ID_RE, OfficerBook, Session
from edge.ui.reply import Reply, err
from edge.ui.routes import find
from edge.ui.scan import first_code

log = logging.getLogger(__name__)

PREVIEW_WIDTH = 320
CAMERA_WAIT_S = 0.5
SCAN_FRAMES = 3
# the daemon's verify errors, as keys the page translates
VERIFY_ERROR_KEYS = {400: "bad_request", 503: "not_ready", 507: "outbox_full"}


class KioskUi:
    """Sessions and the screen's endpoints over one running kiosk (face attempts are
    counted in the store and limited by the verification flow, for every caller)."""

    def __init__(self, host: KioskHost, clock: Callable[[], float] = time.time) -> None:
        self.host = host
        self.clock = clock
        self.desk = OfficerDesk(host, clock)
        self._last_preview: bytes | None = None

    def book(self) -> OfficerBook | None:
        """The officers list (re-read when the file or ui config changes); None if unusable."""
        return self.desk.book()

    # -- dispatch ----------------------------------------------------------------
    def handle(self, method: str, path: str, token: str | None, body: dict[str, Any]) -> Reply:
        found = find(method, path)
        if found is None:
            return err(404, "not_found", f"no such endpoint: {method} {path.split('?', 1)[0]}")
        route, rest = found
        calls: dict[str, Callable[..., Reply]] = {
            "state": lambda _s: self.state(),
            "sign_in": lambda _s: self.sign_in(body),
            "sign_out": lambda _s: self.sign_out(token),
            "scan": lambda _s: self.scan(),
            "kpm": lambda s: self.kpm(s, unquote(rest)),
            "preview": self.preview,
            "guidance": self.guidance,
            "progress": self.progress,
            "verify": lambda s: self.verify(s, body),
        }
        call = calls[route.endpoint]
        if route.session == "none":
            return call(None)
        return self._with_session(token, call, touch=route.session == "touch")

    def _with_session(
        self, token: str | None, fn: Callable[[Session], Reply], touch: bool = True
    ) -> Reply:
        session = self.desk.session(token, touch)
        if session is None:
            return err(401, "signed_out", "sign in first (session missing or expired)")
        return fn(session)

    # -- endpoints -----------------------------------------------------------------
    def state(self) -> Reply:
        """What the always-visible bar shows: link, records waiting, GPS, period, sign-in."""
        status = self.host.status()
        outbox = status.get("outbox", {})
        waiting = int(outbox.get("pending", 0)) + int(outbox.get("sent", 0))
        connected = bool(status.get("broker", {}).get("connected"))
        link = "offline" if not connected else ("syncing" if waiting else "online")
        now = self._now()
        serving = [
            {"programme": p, "period": v}
            for p, v in sorted(self.host.store.current_periods(now).items())
        ]
        book, book_error = self.desk.book_state()
        ui = self.host.ui_config()
        return Reply(
            200,
            {
                "state": status.get("state"),
                "link": link,
                "waiting": waiting,
                "gps": status.get("gps", {}).get("state", "off"),
                "serving": serving,
                "signin_available": book is not None,
                "signin_error": book_error,
                "language": ui.language,
                "max_attempts": ui.max_attempts,
            },
        )

    def sign_in(self, body: dict[str, Any]) -> Reply:
        return self.desk.sign_in(body)

    def sign_out(self, token: str | None) -> Reply:
        return self.desk.sign_out(token)

    def kpm(self, session: Session, kpm_id: str) -> Reply:
        """Eligibility before any capture; records nothing."""
        if not ID_RE.match(kpm_id):
            return err(
                400, "bad_kpm_id", f"KPM id: expected 1-64 letters, digits or ._:/-, got {kpm_id!r}"
            )
        store = self.host.store
        now = self._now()
        elig = check_eligibility(
            store.roster_entries(kpm_id),
            lambda e: store.served_by(e.kpm_id, e.programme, e.period),
            now=now,
            current=store.current_periods(now),
        )
        entry = elig.entry
        attempts = (
            store.attempts_used(session.officer.id, kpm_id, entry.programme, entry.period)
            if entry is not None
            else 0
        )
        # the screen words the refusal itself (in its language) from reason_code and these
        # fields; `reason` is the daemon's English detail, for logs and the API
        return Reply(
            200,
            {
                "kpm_id": kpm_id,
                "eligible": elig.decision is None,
                "decision": elig.decision,
                "reason": elig.reason,
                "reason_code": elig.code,
                "programme": entry.programme if entry else None,
                "period": entry.period if entry else None,
                "valid_from": _utc(entry.valid_from) if entry else None,
                "valid_until": _utc(entry.valid_until) if entry else None,
                "served_at": elig.earlier.get("captured_at") if elig.earlier else None,
                "attempts": attempts,
                "max_attempts": self.host.ui_config().max_attempts,
                "spoof_before": entry is not None and self._spoof_before(kpm_id, entry),
            },
        )

    def _now(self) -> float:
        """The kiosk's record clock (GPS time when the system clock is off), else ours."""
        now = self.host.record_time()
        return self.clock() if now is None else now

    def _spoof_before(self, kpm_id: str, entry: RosterEntry) -> bool:
        """Whether a face check of this KPM, programme and period ended `spoof`: a manual
        handover then is recorded as overriding a suspected presentation attack (the same
        rule as the verifier's), so the manual screen warns the officer."""
        last = self.host.store.last_decision(kpm_id, entry.programme, entry.period, ("spoof",))
        return last is not None

    def _frames(self, n: int) -> list[np.ndarray] | None:
        """n frames from the shared camera, or None while a verification holds it."""
        return self.host.frames(n, CAMERA_WAIT_S)

    def scan(self) -> Reply:
        frames = self._frames(SCAN_FRAMES)
        if frames is None:
            return err(409, "camera_busy", "camera busy with a verification; try again")
        text = first_code(frames)
        if text is None:
            return err(404, "no_code", "no QR code or barcode found; hold the card closer")
        return Reply(200, {"code": text, "kpm_id": text if ID_RE.match(text) else None})

    def preview(self, _session: Session) -> Reply:
        frames = self._frames(1)
        if frames is None:
            if self._last_preview is None:
                return err(409, "camera_busy", "camera busy")
            return Reply(200, self._last_preview, "image/jpeg")
        from PIL import Image

        img = Image.fromarray(frames[0])
        img.thumbnail((PREVIEW_WIDTH, PREVIEW_WIDTH))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=70)
        self._last_preview = buf.getvalue()
        return Reply(200, self._last_preview, "image/jpeg")

    def guidance(self, _session: Session) -> Reply:
        """Detector + quality gates on the latest frame; the measurements stay in the host."""
        try:
            result = self.host.analyse_live(CAMERA_WAIT_S)
        except NotReady:
            return err(503, "not_ready", f"daemon is {self.host.state}")
        if result is None:
            return Reply(200, {"guidance": "busy"})
        return Reply(200, {"guidance": guidance_code(*result)})

    def progress(self, _session: Session) -> Reply:
        """What a running verification asks of the recipient now (the challenge's step)."""
        try:
            return Reply(200, self.host.progress())
        except NotReady:
            return err(503, "not_ready", f"daemon is {self.host.state}")

    def verify(self, session: Session, body: dict[str, Any]) -> Reply:
        """A face check or manual handover; the officer comes from the session."""
        given = body.get("officer_id")
        if given is not None and given != session.officer.id:
            return err(403, "officer_mismatch", "officer_id differs from the signed-in officer")
        kpm_id = body.get("kpm_id")
        if not isinstance(kpm_id, str) or not ID_RE.match(kpm_id):
            return err(400, "bad_kpm_id", "kpm_id: expected 1-64 letters, digits or ._:/-")
        request = {**body, "officer_id": session.officer.id}
        max_attempts = self.host.ui_config().max_attempts
        # the verification flow refuses a face check past the limit (409 attempts_used);
        # attempts are counted in the store per officer, KPM and period, so neither a
        # restart nor signing out and in again gives fresh ones
        code, answer = self.host.verify(request)
        if code != 200:
            error_key = answer.get("error_key") or VERIFY_ERROR_KEYS.get(code, "verify_failed")
            return Reply(code, {**answer, "error_key": error_key})
        attempts = self.host.store.attempts_used(
            session.officer.id, kpm_id, str(answer["programme"]), str(answer["period"])
        )
        if answer.get("decision") in ("match", "manual"):
            attempts = 0  # handed over: nothing left to attempt
        out = dict(answer)
        out.update(
            {
                "attempts": attempts,
                "max_attempts": max_attempts,
                "manual_allowed": attempts >= max_attempts,
            }
        )
        return Reply(200, out)


def _utc(t: float | None) -> str | None:
    return None if t is None else format_utc(t)
