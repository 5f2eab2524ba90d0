"""What the kiosk screen needs from the running kiosk: the interface `edge.daemon.App` implements.

KioskUi depends on this and nothing else of the daemon, so the screen has no import of
the daemon (no circle) and can be tested against a small fake. Each method is one thing
the screen does; the host keeps its locks (camera, verification) to itself.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from edge.config import UiConfig
from edge.roster import RosterEntry


class NotReady(Exception):
    """The kiosk is starting or stopping: nothing to look at or verify yet."""


class ScreenStore(Protocol):
    """The store's reads (and its audit log) the screen asks for."""

    def current_periods(self, now: float) -> dict[str, str]: ...

    def roster_entries(self, kpm_id: str) -> list[RosterEntry]: ...

    def served_by(self, kpm_id: str, programme: str, period: str) -> dict[str, Any] | None: ...

    def attempts_used(self, officer_id: str, kpm_id: str, programme: str, period: str) -> int: ...

    def last_decision(
        self, kpm_id: str, programme: str, period: str, decisions: tuple[str, ...]
    ) -> str | None: ...

    def log_event(self, kind: str, **detail: Any) -> None: ...


class KioskHost(Protocol):
    """The running kiosk as the screen sees it."""

    @property
    def state(self) -> str: ...

    @property
    def store(self) -> ScreenStore: ...

    def ui_config(self) -> UiConfig: ...

    def status(self) -> dict[str, Any]: ...

    def record_time(self) -> float | None:
        """The kiosk's record clock now (GPS time when the system clock is off), None if unknown."""
        ...

    def frames(self, n: int, wait_s: float) -> list[np.ndarray] | None:
        """n frames from the shared camera, or None when a verification holds it past wait_s."""
        ...

    def analyse_live(self, wait_s: float) -> tuple[str, str | None] | None:
        """(status, reason) of the face pipeline on a fresh frame; None while busy.

        Raises NotReady before the pipeline exists.
        """
        ...

    def progress(self) -> dict[str, Any]:
        """What a running verification asks of the recipient. Raises NotReady."""
        ...

    def verify(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]: ...
