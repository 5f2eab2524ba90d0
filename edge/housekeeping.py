"""The daemon's housekeeping thread: store chores that must not sit on the verification or
upload paths (purging acked records past retention, SQLite's quick_check).

Each chore runs at start and then every `every_s()` seconds (read each turn, so a reload's
new interval applies); a chore that raises is logged and tried again next time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.store import Store

log = logging.getLogger(__name__)

TICK_S = 1.0


@dataclass
class Chore:
    name: str
    every_s: Callable[[], float]
    run: Callable[[], object]
    last: float | None = None


def purge_acked(store: Store, retention_days: float, now: float | None = None) -> int:
    """Delete records HQ acked more than `retention_days` ago (the chain stays anchored)."""
    at = time.time() if now is None else now
    n = store.purge_acked(at - retention_days * 86400.0)
    if n:
        log.info("purged %d acked records older than %s days", n, retention_days)
    return n


class Housekeeping:
    """One thread running the chores on their intervals until stopped."""

    def __init__(self, chores: list[Chore], beat: Callable[[], None] | None = None) -> None:
        self.chores = chores
        self.beat = beat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Housekeeping:
        self._thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_due(self, now_m: float) -> None:
        for chore in self.chores:
            if chore.last is not None and now_m - chore.last < chore.every_s():
                continue
            chore.last = now_m
            try:
                chore.run()
            except Exception as exc:
                log.warning("%s failed: %s", chore.name, exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.beat is not None:
                self.beat()
            self.run_due(time.monotonic())
            self._stop.wait(TICK_S)
