"""The GPS reader: a thread that keeps one gpsd connection alive and the latest fix.

gpsd restarts, a receiver gets unplugged, a socket goes silent: the reader closes,
backs off (doubling from reconnect_min_s to reconnect_max_s, with jitter) and tries
again, forever. Meanwhile `current()` is None, which callers record as `unknown`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from edge.capture.clock import NtpCache, choose_clock
from edge.capture.fix import Fix, FixTracker
from edge.capture.gpsd_client import GpsdClient, GpsdUnavailable
from edge.config import GpsConfig

log = logging.getLogger(__name__)

READ_SLICE_S = 0.5  # how often the thread looks at its stop flag while reading


def next_backoff(current: float, lo: float, hi: float) -> float:
    """Doubling backoff between lo and hi (pure)."""
    return min(hi, max(lo, current * 2.0))


class GpsReader:
    """Owns a gpsd connection in a daemon thread; `current()` is the latest usable fix."""

    def __init__(
        self,
        cfg: GpsConfig,
        on_fix: Callable[[Fix], None] | None = None,
        on_report: Callable[[dict[str, Any]], None] | None = None,
        silence_s: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_fix = on_fix
        self.on_report = on_report
        # gpsd sends a TPV a second while a receiver is attached. After silence_s/2 of
        # quiet the reader asks for gpsd's VERSION (answered even with no receiver);
        # no answer by silence_s means a hung gpsd: reconnect.
        self.silence_s = silence_s if silence_s is not None else max(15.0, 2 * cfg.max_fix_age_s)
        self._tracker = FixTracker(cfg.max_fix_age_s)
        self._client = GpsdClient(cfg.host, cfg.port, connect_timeout_s=3.0)
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False
        self._crashed: BaseException | None = None
        self.connects = 0
        self.last_error = ""
        self.backoff_s = cfg.reconnect_min_s
        self._ntp = NtpCache()

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> GpsReader:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gps-reader", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    close = stop

    def __enter__(self) -> GpsReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        """The thread runs (a disconnected reader that keeps retrying is alive)."""
        return self._thread is not None and self._thread.is_alive() and self._crashed is None

    @property
    def connected(self) -> bool:
        return self._connected

    # -- what callers read -----------------------------------------------------
    def current(self) -> Fix | None:
        """The latest fix (its `stale` flag tells its age), or None: unknown position."""
        with self._lock:
            return self._tracker.fix if self._connected else None

    def wait_for_fix(
        self, timeout_s: float, fresh: bool = True, with_time: bool = False
    ) -> Fix | None:
        """Block until a (fresh; timed) fix is there or timeout_s passes."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                fix = self._tracker.fix if self._connected else None
                if (
                    fix is not None
                    and not (fresh and fix.stale)
                    and not (with_time and fix.gps_time is None)
                ):
                    return fix
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.5))

    def wait_connected(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not self._connected:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.5))
            return True

    def state(self) -> str:
        """disconnected | no_fix | stale | fix_2d | fix_3d | stopped."""
        if not self.alive:
            return "stopped"
        fix = self.current()
        if not self._connected:
            return "disconnected"
        if fix is None:
            return "no_fix"
        if fix.stale:
            return "stale"
        return "fix_2d" if fix.two_d else "fix_3d"

    def status(self) -> dict[str, Any]:
        """For `edge status` and the MQTT status topic; says which clock records use now."""
        fix = self.current()
        fresh = fix is not None and not fix.stale
        clock = choose_clock(
            fix.gps_time_now() if fresh and fix is not None else None,
            time.time(),
            self._ntp(),
            self.cfg.clock_tolerance_s,
        )
        return {
            "clock": {"source": clock.source, "offset_s": clock.offset_s, "note": clock.note},
            "state": self.state(),
            "connected": self._connected,
            "gpsd": f"{self.cfg.host}:{self.cfg.port}",
            "fix": fix.to_dict() if fix is not None else None,
            "connects": self.connects,
            "last_error": self.last_error,
        }

    # -- the thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._session()
                if self._stop.is_set():
                    break
                delay = self.backoff_s * random.uniform(0.8, 1.2)
                self.backoff_s = next_backoff(
                    self.backoff_s, self.cfg.reconnect_min_s, self.cfg.reconnect_max_s
                )
                self._stop.wait(delay)
        except BaseException as exc:  # never die silently: alive turns False, status says why
            self._crashed = exc
            self.last_error = f"reader crashed: {exc!r}"
            log.exception("gps reader crashed")
        finally:
            self._set_connected(False)
            self._client.close()

    def _set_connected(self, value: bool) -> None:
        with self._lock:
            self._connected = value
            if not value:
                self._tracker.reset()
            self._lock.notify_all()

    def _session(self) -> None:
        """One connection, read until it fails or goes silent."""
        try:
            self._client.connect()
        except GpsdUnavailable as exc:
            self._note_error(str(exc))
            return
        self.connects += 1
        self._set_connected(True)
        log.info("connected to gpsd at %s:%s", self.cfg.host, self.cfg.port)
        last_heard, pinged = time.monotonic(), False
        try:
            while not self._stop.is_set():
                report = self._client.read(READ_SLICE_S)
                now = time.monotonic()
                if report is None:
                    quiet = now - last_heard
                    if quiet > self.silence_s:
                        raise GpsdUnavailable(
                            f"gpsd at {self.cfg.host}:{self.cfg.port}: silent for "
                            f"{self.silence_s:g} s"
                        )
                    if quiet > self.silence_s / 2 and not pinged:
                        self._client.ping()  # idle (no receiver) or hung? a live gpsd answers
                        pinged = True
                    with self._lock:
                        self._lock.notify_all()
                    continue
                last_heard, pinged = now, False
                self.backoff_s = self.cfg.reconnect_min_s
                self._apply(report, now)
        except GpsdUnavailable as exc:
            self._note_error(str(exc))
        finally:
            self._client.close()
            self._set_connected(False)

    def _apply(self, report: dict[str, Any], now: float) -> None:
        with self._lock:
            fix = self._tracker.feed(report, now)
            self._lock.notify_all()
        try:
            if self.on_report is not None:
                self.on_report(report)
            if fix is not None and self.on_fix is not None:
                self.on_fix(fix)
        except Exception:  # a listener's bug must not stop the reader
            log.exception("gps listener failed")

    def _note_error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s; retrying with backoff", message)
        self.last_error = message
