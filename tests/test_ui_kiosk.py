"""KioskUi against a fake of its interface (edge/ui/host.py): no daemon, no HTTP, no browser.

The fake host holds plain data (status, frames, roster entries, attempts) and records
what the screen asked of it, so each endpoint's rules are checked on their own: sessions,
route table, which clock the eligibility uses, camera busy, guidance busy/not ready,
the officer taken from the session, and the error keys the page translates.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edge.config import UiConfig
from edge.roster import RosterEntry
from edge.ui import kiosk
from edge.ui.host import KioskHost, NotReady
from edge.ui.kiosk import KioskUi, Reply
from edge.ui.officers import hash_pin
from edge.ui.routes import ROUTES, find, is_screen_path
from tests.ui_world import qr_frame

FAST_N = 1024
NOW = 1_764_547_200.0  # 2025-12-01T00:00:00Z


@dataclass
class FakeStore:
    entries: dict[str, list[RosterEntry]] = field(default_factory=dict)
    periods: dict[str, str] = field(default_factory=dict)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    spoofed: set[str] = field(default_factory=set)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    periods_asked_at: list[float] = field(default_factory=list)

    def current_periods(self, now: float) -> dict[str, str]:
        self.periods_asked_at.append(now)
        return dict(self.periods)

    def roster_entries(self, kpm_id: str) -> list[RosterEntry]:
        return list(self.entries.get(kpm_id, []))

    def served_by(self, kpm_id: str, programme: str, period: str) -> dict[str, Any] | None:
        return None

    def attempts_used(self, officer_id: str, kpm_id: str, programme: str, period: str) -> int:
        return self.attempts.get((officer_id, kpm_id), 0)

    def last_decision(
        self, kpm_id: str, programme: str, period: str, decisions: tuple[str, ...]
    ) -> str | None:
        return "rec-1" if "spoof" in decisions and kpm_id in self.spoofed else None

    def log_event(self, kind: str, **detail: Any) -> None:
        self.events.append((kind, detail))


@dataclass
class FakeHost:
    """Implements KioskHost with plain data."""

    ui: UiConfig
    fake_store: FakeStore = field(default_factory=FakeStore)
    host_state: str = "ready"
    status_doc: dict[str, Any] = field(default_factory=dict)
    clock_now: float | None = NOW
    camera: list[np.ndarray] | None = None  # None: a verification holds the camera
    analysis: tuple[str, str | None] | NotReady | None = ("ok", None)
    verify_answer: tuple[int, dict[str, Any]] = (200, {})
    verify_requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.host_state

    @property
    def store(self) -> FakeStore:
        return self.fake_store

    def ui_config(self) -> UiConfig:
        return self.ui

    def status(self) -> dict[str, Any]:
        return self.status_doc

    def record_time(self) -> float | None:
        return self.clock_now

    def frames(self, n: int, wait_s: float) -> list[np.ndarray] | None:
        return None if self.camera is None else self.camera[:n]

    def analyse_live(self, wait_s: float) -> tuple[str, str | None] | None:
        if isinstance(self.analysis, NotReady):
            raise self.analysis
        return self.analysis

    def progress(self) -> dict[str, Any]:
        if self.host_state != "ready":
            raise NotReady(self.host_state)
        return {"challenge": {"step": "left", "index": 0, "seconds_left": 4.0}}

    def verify(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.verify_requests.append(request)
        return self.verify_answer


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    officers = tmp_path / "officers.toml"
    officers.write_text(
        '[[officer]]\nid = "officer-007"\nname = "Siti"\n'
        f'pin_hash = "{hash_pin("1234", n=FAST_N)}"\nbadge = "BADGE-7"\n'
    )
    return FakeHost(UiConfig(officers_file=str(officers), max_attempts=3, pin_lockout_after=2))


def _ui(host: FakeHost) -> KioskUi:
    checked: KioskHost = host  # the fake must satisfy the protocol the App implements
    return KioskUi(checked, clock=lambda: NOW + 5_000_000.0)  # far off the record clock


def _sign_in(ui: KioskUi) -> str:
    reply = ui.handle("POST", "/v1/session", None, {"officer_id": "officer-007", "pin": "1234"})
    assert reply.code == 200, reply.body
    assert isinstance(reply.body, dict)
    return str(reply.body["token"])


def _body(reply: Reply) -> dict[str, Any]:
    assert isinstance(reply.body, dict), reply.body
    return reply.body


def test_route_table_is_the_one_both_sides_use() -> None:
    for route in ROUTES:
        assert callable(getattr(KioskUi, route.endpoint)), route
        probe = route.path + ("KPM-1" if route.prefix else "")
        assert find(route.method, probe) == (route, "KPM-1" if route.prefix else "")
        assert is_screen_path(probe, bearer=True)
    assert not is_screen_path("/v1/verify", bearer=False)  # the local CLI's
    assert not is_screen_path("/v1/status", bearer=True)
    assert find("PUT", "/v1/session") is None


def test_state_bar_follows_the_link_and_uses_the_record_clock(host: FakeHost) -> None:
    ui = _ui(host)
    host.fake_store.periods = {"sembako": "2025-12"}
    host.status_doc = {"state": "ready", "outbox": {"pending": 2, "sent": 1}, "broker": {}}
    body = _body(ui.handle("GET", "/v1/ui/state", None, {}))
    assert (body["link"], body["waiting"], body["gps"]) == ("offline", 3, "off")
    assert body["serving"] == [{"programme": "sembako", "period": "2025-12"}]
    assert host.fake_store.periods_asked_at == [NOW]  # the kiosk's record clock, not ours
    assert body["signin_available"] is True and body["max_attempts"] == 3
    host.status_doc["broker"] = {"connected": True}
    assert _body(ui.handle("GET", "/v1/ui/state", None, {}))["link"] == "syncing"
    host.status_doc["outbox"] = {"pending": 0, "sent": 0}
    assert _body(ui.handle("GET", "/v1/ui/state", None, {}))["link"] == "online"
    host.clock_now = None  # no parts yet: the screen's own clock
    ui.handle("GET", "/v1/ui/state", None, {})
    assert host.fake_store.periods_asked_at[-1] == NOW + 5_000_000.0


def test_sign_in_lockout_and_events_carry_ids_only(host: FakeHost) -> None:
    ui = _ui(host)
    badge = ui.handle("POST", "/v1/session", None, {"badge": "BADGE-7"})
    assert badge.code == 200 and _body(badge)["officer_id"] == "officer-007"
    token = str(_body(badge)["token"])
    assert _body(ui.handle("DELETE", "/v1/session", token, {})) == {"signed_out": True}
    assert ui.handle("GET", "/v1/guidance", token, {}).code == 401
    wrong = ui.handle("POST", "/v1/session", None, {"officer_id": "officer-007", "pin": "9999"})
    assert (wrong.code, _body(wrong)["error_key"], _body(wrong)["attempts_left"]) == (
        401,
        "wrong_pin",
        1,
    )
    locked = ui.handle("POST", "/v1/session", None, {"officer_id": "officer-007", "pin": "9999"})
    assert (locked.code, _body(locked)["error_key"]) == (423, "locked")
    assert ui.handle("POST", "/v1/session", None, {"officer_id": "x y", "pin": "1"}).code == 400
    assert ("officer_locked", {"officer_id": "officer-007"}) in host.fake_store.events
    assert "9999" not in repr(host.fake_store.events)


def test_no_officers_file_means_no_sign_in(host: FakeHost, tmp_path: Path) -> None:
    host.ui = UiConfig(officers_file=str(tmp_path / "missing.toml"))
    ui = _ui(host)
    assert _body(ui.handle("GET", "/v1/ui/state", None, {}))["signin_available"] is False
    reply = ui.handle("POST", "/v1/session", None, {"officer_id": "officer-007", "pin": "1234"})
    assert (reply.code, _body(reply)["error_key"]) == (503, "signin_unavailable")


def test_endpoints_need_a_session_and_unknown_ones_are_404(host: FakeHost) -> None:
    ui = _ui(host)
    for method, path in (
        ("GET", "/v1/kpm/KPM-1"),
        ("GET", "/v1/preview.jpg"),
        ("GET", "/v1/guidance"),
        ("GET", "/v1/progress"),
        ("POST", "/v1/verify"),
    ):
        assert ui.handle(method, path, "forged", {"kpm_id": "KPM-1"}).code == 401, path
    assert _body(ui.handle("GET", "/v1/nothing", None, {}))["error_key"] == "not_found"
    assert ui.handle("POST", "/v1/kpm/KPM-1", None, {}).code == 404


def test_kpm_lookup_judges_eligibility_on_the_record_clock(host: FakeHost) -> None:
    ui = _ui(host)
    token = _sign_in(ui)
    entry = RosterEntry(
        "KPM-1", "sembako", "2025-12", (b"\0" * 512,), None,
        valid_from=NOW - 60, valid_until=NOW + 60, bundle_id="b1",
    )  # fmt: skip
    host.fake_store.entries["KPM-1"] = [entry]
    host.fake_store.periods = {"sembako": "2025-12"}
    host.fake_store.attempts[("officer-007", "KPM-1")] = 2
    host.fake_store.spoofed.add("KPM-1")
    body = _body(ui.handle("GET", "/v1/kpm/KPM-1", token, {}))
    # the screen's own clock is months past the window: only the host's record clock is in it
    assert body["eligible"] is True, body
    assert (body["attempts"], body["max_attempts"], body["spoof_before"]) == (2, 3, True)
    assert _body(ui.handle("GET", "/v1/kpm/KPM-2", token, {}))["reason_code"] == "not on the list"
    bad = ui.handle("GET", "/v1/kpm/bad%20id", token, {})
    assert (bad.code, _body(bad)["error_key"]) == (400, "bad_kpm_id")


def test_scan_and_preview_share_the_camera(host: FakeHost) -> None:
    ui = _ui(host)
    busy = ui.handle("POST", "/v1/scan", None, {})
    assert (busy.code, _body(busy)["error_key"]) == (409, "camera_busy")
    blank = np.full((480, 640, 3), 200, np.uint8)
    host.camera = [blank, blank, qr_frame("KPM-0042")]
    scanned = _body(ui.handle("POST", "/v1/scan", None, {}))
    assert scanned == {"code": "KPM-0042", "kpm_id": "KPM-0042"}
    host.camera = [blank]
    assert _body(ui.handle("POST", "/v1/scan", None, {}))["error_key"] == "no_code"
    token = _sign_in(ui)
    host.camera = None
    assert ui.handle("GET", "/v1/preview.jpg", token, {}).code == 409  # nothing to show yet
    host.camera = [qr_frame("x", size=1280)]
    jpeg = ui.handle("GET", "/v1/preview.jpg", token, {})
    assert jpeg.content_type == "image/jpeg" and isinstance(jpeg.body, bytes)
    assert max(Image.open(io.BytesIO(jpeg.body)).size) == kiosk.PREVIEW_WIDTH
    host.camera = None  # a verification holds the camera: the last preview again
    assert ui.handle("GET", "/v1/preview.jpg", token, {}).body == jpeg.body


def test_guidance_and_progress(host: FakeHost) -> None:
    ui = _ui(host)
    token = _sign_in(ui)
    host.analysis = ("poor_quality", "face too small: move closer")
    assert _body(ui.handle("GET", "/v1/guidance", token, {})) == {"guidance": "move_closer"}
    host.analysis = None
    assert _body(ui.handle("GET", "/v1/guidance", token, {})) == {"guidance": "busy"}
    host.analysis = NotReady("starting")
    host.host_state = "starting"
    assert ui.handle("GET", "/v1/guidance", token, {}).code == 503
    assert _body(ui.handle("GET", "/v1/progress", token, {}))["error_key"] == "not_ready"
    host.host_state = "ready"
    assert _body(ui.handle("GET", "/v1/progress", token, {}))["challenge"]["step"] == "left"


def test_verify_takes_the_officer_from_the_session(host: FakeHost) -> None:
    ui = _ui(host)
    token = _sign_in(ui)
    other = ui.handle("POST", "/v1/verify", token, {"kpm_id": "KPM-1", "officer_id": "other"})
    assert (other.code, _body(other)["error_key"]) == (403, "officer_mismatch")
    assert host.verify_requests == []
    host.verify_answer = (
        200,
        {"decision": "no_match", "programme": "sembako", "period": "2025-12"},
    )
    host.fake_store.attempts[("officer-007", "KPM-1")] = 3
    body = _body(ui.handle("POST", "/v1/verify", token, {"kpm_id": "KPM-1"}))
    assert host.verify_requests == [{"kpm_id": "KPM-1", "officer_id": "officer-007"}]
    assert (body["attempts"], body["manual_allowed"]) == (3, True)
    host.verify_answer = (200, {"decision": "match", "programme": "sembako", "period": "2025-12"})
    assert _body(ui.handle("POST", "/v1/verify", token, {"kpm_id": "KPM-1"}))["attempts"] == 0
    host.verify_answer = (507, {"error": "outbox full"})
    full = ui.handle("POST", "/v1/verify", token, {"kpm_id": "KPM-1"})
    assert (full.code, _body(full)["error_key"]) == (507, "outbox_full")
