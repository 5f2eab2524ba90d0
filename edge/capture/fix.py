"""A GPS fix as plain data, and the pure rules that turn gpsd reports into one.

No sockets here: `FixTracker.feed(report, now)` is a function of its inputs, so the
rules (2D/3D, missing time, lost fix, unplugged receiver) are testable without gpsd.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bansos_contract.utc import iso_ms

MODE_NO_FIX = 1
MODE_2D = 2
MODE_3D = 3


def parse_gps_time(value: Any) -> float | None:
    """gpsd's ISO 8601 UTC time ("2017-07-19T08:50:01.200Z") as Unix seconds, None if absent/bad."""
    if not isinstance(value, str) or not value.endswith("Z"):
        return None
    try:
        dt = datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        return None
    return dt.timestamp()


def format_gps_time(ts: float | None) -> str | None:
    """Unix seconds as gpsd writes them: millisecond ISO 8601 with Z."""
    return None if ts is None else iso_ms(round(ts, 3))


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Fix:
    """One position from gpsd. `received_monotonic` is when it arrived (time.monotonic)."""

    lat: float
    lon: float
    mode: int  # 2 = 2D, 3 = 3D
    eph_m: float | None  # horizontal error estimate in metres (gpsd's eph), None if unknown
    sats_used: int | None
    gps_time: float | None  # UTC Unix seconds from the receiver; None until RMC/ZDA says
    received_monotonic: float
    max_age_s: float = 10.0

    def age_s(self, now_monotonic: float | None = None) -> float:
        now = time.monotonic() if now_monotonic is None else now_monotonic
        return max(0.0, now - self.received_monotonic)

    def is_stale(self, now_monotonic: float | None = None) -> bool:
        return self.age_s(now_monotonic) > self.max_age_s

    @property
    def stale(self) -> bool:
        """Older than max_age_s now: the receiver stopped reporting (unplugged, lost sky)."""
        return self.is_stale()

    @property
    def two_d(self) -> bool:
        """A 2D fix: altitude unknown, position usually worse; recorded and marked as such."""
        return self.mode == MODE_2D

    def gps_time_now(self, now_monotonic: float | None = None) -> float | None:
        """The receiver's time carried forward to now by the monotonic clock."""
        if self.gps_time is None:
            return None
        return self.gps_time + self.age_s(now_monotonic)

    def record_geo(self, now_monotonic: float | None = None) -> dict[str, Any]:
        """The record's `geo` object (see docs/architecture.md)."""
        return {
            "lat": self.lat,
            "lon": self.lon,
            "eph_m": self.eph_m,
            "mode": self.mode,
            "fix_age_s": round(self.age_s(now_monotonic), 3),
        }

    def to_dict(self, now_monotonic: float | None = None) -> dict[str, Any]:
        """Everything `edge gps --json` prints."""
        return {
            **self.record_geo(now_monotonic),
            "sats_used": self.sats_used,
            "time": format_gps_time(self.gps_time),
            "stale": self.is_stale(now_monotonic),
            "two_d": self.two_d,
        }


def _eph(tpv: dict[str, Any]) -> float | None:
    eph = _finite(tpv.get("eph"))
    if eph is not None:
        return eph
    epx, epy = _finite(tpv.get("epx")), _finite(tpv.get("epy"))
    if epx is not None and epy is not None:
        return math.hypot(epx, epy)  # per-axis 95% errors combined; close to gpsd's eph
    return None


def _sats_used(sky: dict[str, Any]) -> int | None:
    usat = sky.get("uSat")
    if isinstance(usat, int) and not isinstance(usat, bool) and usat >= 0:
        return usat
    sats = sky.get("satellites")
    if isinstance(sats, list):
        return sum(1 for s in sats if isinstance(s, dict) and s.get("used") is True)
    return None


class FixTracker:
    """Folds gpsd reports into the current Fix (or None: no fix, lost fix, receiver gone)."""

    def __init__(self, max_age_s: float = 10.0) -> None:
        self.max_age_s = max_age_s
        self.fix: Fix | None = None
        self.sats_used: int | None = None
        self.mode: int = 0  # last mode gpsd reported (0 unknown, 1 no fix)

    def reset(self) -> None:
        """Forget everything (connection lost): nothing known until gpsd speaks again."""
        self.fix = None
        self.sats_used = None
        self.mode = 0

    def feed(self, report: dict[str, Any], now_monotonic: float) -> Fix | None:
        """Apply one report; returns the new Fix when this report produced one."""
        cls = report.get("class")
        if cls == "SKY":
            sats = _sats_used(report)
            if sats is not None:
                self.sats_used = sats
                if self.fix is not None:
                    self.fix = replace(self.fix, sats_used=sats)
            return None
        if cls == "DEVICE" and report.get("activated") == 0:
            self.fix = None  # the receiver went away (unplugged); gpsd itself is still up
            self.mode = 0
            return None
        if cls != "TPV":
            return None
        mode = report.get("mode")
        if not isinstance(mode, int) or isinstance(mode, bool):
            return None
        self.mode = mode
        lat, lon = _finite(report.get("lat")), _finite(report.get("lon"))
        if mode < MODE_2D or lat is None or lon is None:
            if mode < MODE_2D:
                self.fix = None
            return None
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return None
        self.fix = Fix(
            lat=lat,
            lon=lon,
            mode=min(mode, MODE_3D),
            eph_m=_eph(report),
            sats_used=self.sats_used,
            gps_time=parse_gps_time(report.get("time")),
            received_monotonic=now_monotonic,
            max_age_s=self.max_age_s,
        )
        return self.fix
