"""Liveness of the daemon's parts, so the watchdog pings only while all of them work.

Each part beats; a part silent for longer than its allowance is a problem, and a
problem stops the WATCHDOG=1 pings, so systemd restarts a wedged daemon.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Part:
    allowance_s: float
    last_beat: float
    detail: str = ""


class Health:
    """A table of parts and their last heartbeat (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._parts: dict[str, _Part] = {}
        self._lock = threading.Lock()

    def register(self, name: str, allowance_s: float) -> None:
        with self._lock:
            self._parts[name] = _Part(allowance_s, self._clock())

    def unregister(self, name: str) -> None:
        with self._lock:
            self._parts.pop(name, None)

    def beat(self, name: str, detail: str = "") -> None:
        with self._lock:
            part = self._parts.get(name)
            if part is not None:
                part.last_beat = self._clock()
                part.detail = detail

    def problems(self) -> list[str]:
        """Names of parts that missed their allowance, with how long they have been silent."""
        now = self._clock()
        with self._lock:
            return [
                f"{name} silent {now - p.last_beat:.0f}s"
                for name, p in sorted(self._parts.items())
                if now - p.last_beat > p.allowance_s
            ]

    @property
    def healthy(self) -> bool:
        return not self.problems()


class ApiProbe:
    """Asks the daemon's own API for /v1/health over its real socket, with a short timeout.

    Any HTTP answer (200 or 503) means the API can answer; a refused, reset or silent
    connection is a problem, so the watchdog stops pinging and systemd restarts a daemon
    whose parts beat but whose API cannot serve the screen.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.problem: str | None = None
        self.last_ms: float | None = None

    def check(self, timeout_s: float = 3.0) -> str | None:
        from edge.api import request_json

        t0 = time.monotonic()
        try:
            request_json(self.address, "GET", "/v1/health", timeout=timeout_s)
        except Exception as exc:  # refused, reset, timed out, or not HTTP at all
            what = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}"
            self.problem = f"api not answering on {self.address} ({what} in {timeout_s:.0f}s)"
        else:
            self.problem = None
        self.last_ms = (time.monotonic() - t0) * 1000
        return self.problem


DISK_LOW_BYTES = 1 << 20  # below this the store cannot be trusted to take one more record


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full") or the kernel's ENOSPC/EDQUOT."""
    import errno
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class DiskWatch:
    """Whether the state directory can take records: a write that failed with a full disk
    (until one succeeds, or space comes back), or less than DISK_LOW_BYTES free."""

    def __init__(self, state_dir: str, low_bytes: int = DISK_LOW_BYTES) -> None:
        self.state_dir = state_dir
        self.low_bytes = low_bytes
        self._failed: str | None = None
        self._free_at_failure = 0

    def _free(self) -> int | None:
        import shutil

        try:
            return shutil.disk_usage(self.state_dir).free
        except OSError:
            return None

    def failed(self, exc: BaseException) -> None:
        self._failed = str(exc)
        self._free_at_failure = self._free() or 0

    def stored(self) -> None:
        self._failed = None

    def problem(self) -> str | None:
        free = self._free()
        if (
            self._failed is not None
            and free is not None
            and free > self._free_at_failure + 4 * self.low_bytes
        ):
            self._failed = None  # space came back
        if self._failed is not None:
            return f"disk full: nothing stored in {self.state_dir} ({self._failed})"
        if free is not None and free < self.low_bytes:
            return f"disk full: {free} bytes free in {self.state_dir}"
        return None
