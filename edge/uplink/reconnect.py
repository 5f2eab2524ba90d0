"""When the session dials the broker next: backoff state, the CONNACK deadline, stable links.

The delays themselves are policy.backoff_delay (pure); this holds the state between tries,
so the session class only asks "may I dial now?" and says "dialled", "up" and "lost".
"""

from __future__ import annotations

import logging
import random

from edge.uplink.policy import backoff_delay

log = logging.getLogger(__name__)

STABLE_LINK_S = 30.0  # a link up this long resets the reconnect backoff


class Reconnect:
    """Exponential backoff with full jitter; a link that held resets it, a flapping one not."""

    def __init__(
        self, min_s: float, max_s: float, rng: random.Random, stable_s: float = STABLE_LINK_S
    ) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.rng = rng
        self.stable_s = stable_s
        self.attempt = 0
        self.next_at = 0.0  # monotonic time of the next dial
        self.deadline = 0.0  # monotonic time a dialled link must have its CONNACK by
        self.online_since = 0.0

    def wait_s(self, now_m: float) -> float:
        """Seconds until the next dial is allowed (<= 0: dial now)."""
        return self.next_at - now_m

    def schedule(self, now_m: float) -> float:
        """A dial failed or a link went: set the next dial time; returns the delay."""
        delay = backoff_delay(self.attempt, self.min_s, self.max_s, self.rng)
        self.attempt += 1
        self.next_at = now_m + delay
        log.info("MQTT reconnect in %.1f s (attempt %d)", delay, self.attempt)
        return delay

    def dialled(self, now_m: float, connect_timeout_s: float) -> None:
        self.deadline = now_m + connect_timeout_s

    def connack_overdue(self, now_m: float) -> bool:
        return now_m > self.deadline

    def up(self, now_m: float) -> None:
        self.online_since = now_m

    def lost(self, now_m: float) -> None:
        """An online link went: if it held for stable_s, the next try starts from scratch."""
        if now_m - self.online_since >= self.stable_s:
            self.attempt = 0
