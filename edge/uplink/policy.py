"""Pure decisions of the uplink: reconnect backoff, resend timing, outbox capacity, window room.

No I/O and no clock reads here: callers pass `now` and a random source, so every rule is
testable exactly.
"""

from __future__ import annotations

import random


def backoff_cap(attempt: int, min_s: float, max_s: float) -> float:
    """Exponential ceiling: min_s * 2**attempt, never above max_s (attempt counts from 0)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    return min(max_s, min_s * (2.0 ** min(attempt, 60)))


def backoff_delay(
    attempt: int, min_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Full jitter: uniform in [0, cap], so a fleet that lost the broker together spreads out."""
    return (rng or random).uniform(0.0, backoff_cap(attempt, min_s, max_s))


def resend_due(
    state: str, sent_at: float | None, now: float, resend_after_s: float, started_at: float
) -> bool:
    """Should this outbox row go out (again)?

    pending: always. sent: when HQ has not acked it `resend_after_s` after the PUBACK, or when
    it was sent by an earlier run of this process (at start everything not acked goes again).
    acked: never.
    """
    if state == "pending":
        return True
    if state == "sent":
        if sent_at is None:
            return True
        return sent_at < started_at or now - sent_at >= resend_after_s
    return False


def window_room(in_flight: int, window: int) -> int:
    """How many more publishes fit in the in-flight window."""
    return max(0, window - in_flight)


def window_fits(count: int, in_flight_bytes: int, size: int, window: int, max_bytes: int) -> bool:
    """Does one more publish of `size` bytes fit the in-flight window?

    Counted and weighed: at most `window` messages and (after the first) at most `max_bytes`
    unanswered on the link. The count fills a fast link; the bytes keep a slow one from
    queueing seconds of records behind every PUBACK (bufferbloat that would also delay pings).
    """
    if count >= window:
        return False
    return count == 0 or in_flight_bytes + size <= max_bytes


def stalled(now: float, waiting_since: float | None, stall_s: float) -> bool:
    """True when publishes have waited `stall_s` with no PUBACK at all: the link is dead.

    `waiting_since` is the later of the last PUBACK and the moment the window stopped being
    empty (None when nothing is in flight). Noticed while sending, this beats the keepalive
    (a PINGREQ only goes out after `keepalive` of silence, and the verdict takes another).
    """
    return waiting_since is not None and now - waiting_since >= stall_s
