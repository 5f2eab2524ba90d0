"""The uplink's event counters, safe to read from any thread (the API and status read them)."""

from __future__ import annotations

import threading

KEYS = (
    "published",
    "puback",
    "rejected",
    "acked",
    "ack_refused",
    "connects",
    "connect_failures",
    "link_lost",
    "loop_errors",
)


class Counters:
    """Named totals since start; `counters["acked"]` reads one, snapshot() copies all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n: dict[str, int] = dict.fromkeys(KEYS, 0)

    def add(self, key: str, n: int = 1) -> int:
        """Count `n` more `key` events; returns the new total."""
        with self._lock:
            self._n[key] += n
            return self._n[key]

    def __getitem__(self, key: str) -> int:
        with self._lock:
            return self._n[key]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._n)
