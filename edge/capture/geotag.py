"""Where and when for a record, from the current fix: the two closures the verifier asks for.

`where(fix, place)` gives the record's `geo` and `geofence`; `when(fix, ...)` its
`captured_at` and `clock`. Rules: no fix -> geo null, geofence unknown. A stale fix
(older than gps.max_fix_age_s) is still recorded, with its age, but its geofence is
unknown: the kiosk may have moved since. A 2D fix is recorded with mode 2 and its
geofence is judged with its (usually larger) error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edge.capture.clock import ClockChoice, NtpCache, choose_clock, ntp_synchronized
from edge.capture.fix import Fix
from edge.geo import UNKNOWN, geofence_dict

__all__ = ["NtpCache", "when", "where"]


def where(
    fix: Fix | None, place: dict[str, Any] | None, now_monotonic: float | None = None
) -> tuple[dict[str, Any] | None, str]:
    """(record geo or None, inside|outside|unknown)."""
    if fix is None:
        return None, UNKNOWN
    geo = fix.record_geo(now_monotonic)
    if fix.is_stale(now_monotonic):
        return geo, UNKNOWN
    return geo, geofence_dict(place, fix.lat, fix.lon, fix.eph_m)


def when(
    fix: Fix | None,
    tolerance_s: float = 2.0,
    ntp: Callable[[], bool | None] = ntp_synchronized,
    system_time: float | None = None,
    now_monotonic: float | None = None,
) -> ClockChoice:
    """The record's time and clock source (GPS time only from a fresh fix)."""
    gps_time = None
    if fix is not None and not fix.is_stale(now_monotonic):
        gps_time = fix.gps_time_now(now_monotonic)
    return choose_clock(
        gps_time, time.time() if system_time is None else system_time, ntp(), tolerance_s
    )
