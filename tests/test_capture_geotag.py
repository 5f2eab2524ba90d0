"""where/when for records: fix + place -> geo + geofence; fix + clocks -> time + source."""

from __future__ import annotations

from edge.capture.fix import Fix
from edge.capture.geotag import NtpCache, when, where

PLACE = {"type": "point", "lat": -7.7156, "lon": 110.3647, "radius_m": 300}
NOW_WALL = 1_793_000_000.0


def fix(age_ref: float = 100.0, **kw: object) -> Fix:
    base: dict = {
        "lat": -7.7156,
        "lon": 110.3647,
        "mode": 3,
        "eph_m": 5.0,
        "sats_used": 8,
        "gps_time": NOW_WALL,
        "received_monotonic": age_ref,
        "max_age_s": 10.0,
    }
    return Fix(**{**base, **kw})


def test_where_fresh_stale_and_none() -> None:
    geo, fence = where(fix(), PLACE, now_monotonic=101.0)
    assert fence == "inside" and geo == {
        "lat": -7.7156,
        "lon": 110.3647,
        "eph_m": 5.0,
        "mode": 3,
        "fix_age_s": 1.0,
    }
    geo, fence = where(fix(), PLACE, now_monotonic=130.0)
    assert fence == "unknown" and geo is not None and geo["fix_age_s"] == 30.0
    assert where(None, PLACE) == (None, "unknown")
    assert where(fix(), None, now_monotonic=101.0)[1] == "unknown"
    # a 2D fix with a big error near the edge is not inside
    assert where(fix(mode=2, eph_m=400.0), PLACE, now_monotonic=101.0)[1] == "unknown"
    assert where(fix(lat=-7.73), PLACE, now_monotonic=101.0)[1] == "outside"


def test_when_uses_gps_time_of_fresh_fixes_only() -> None:
    c = when(fix(), ntp=lambda: False, system_time=NOW_WALL - 86400, now_monotonic=102.0)
    assert c.source == "gps" and c.time == NOW_WALL + 2.0
    c = when(fix(), ntp=lambda: False, system_time=NOW_WALL - 86400, now_monotonic=150.0)
    assert c.source == "unsynced" and c.time == NOW_WALL - 86400
    assert when(None, ntp=lambda: True, system_time=NOW_WALL).source == "ntp"


def test_ntp_cache_asks_once_per_ttl() -> None:
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return True

    cache = NtpCache(ttl_s=3600, probe=probe)
    assert cache() is True and cache() is True and len(calls) == 1
