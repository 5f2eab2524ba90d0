"""Where a record's time comes from: `gps`, `ntp` or `unsynced` (a Pi has no RTC).

`choose_clock` is pure: given GPS time (if a fresh fix has one), the system time and
whether the kernel says NTP has synchronised the clock, it picks the time to record
and says which source it is. GPS time wins when it disagrees with the system clock by
more than the tolerance (2 s by default): the system clock is then wrong (booted
without network, RTC-less Pi starting at its last saved time).

`ntp_synchronized()` asks the kernel (adjtimex via ctypes; `timedatectl` as a
fallback) and answers None when neither is available.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

# GPS time before this cannot be right (this software did not exist yet): an old
# receiver with a week-rollover bug reports dates 19.6 years in the past.
MIN_PLAUSIBLE_GPS_TIME = datetime(2025, 1, 1, tzinfo=UTC).timestamp()

TIME_ERROR = 5  # adjtimex return value: clock not synchronised
STA_UNSYNC = 0x0040  # timex.status bit: clock not synchronised


@dataclass(frozen=True)
class ClockChoice:
    source: str  # gps | ntp | unsynced
    time: float  # Unix seconds to record
    offset_s: float | None  # system minus GPS, when GPS time is known
    note: str  # one line for status and logs


def choose_clock(
    gps_time: float | None,
    system_time: float,
    ntp_synced: bool | None,
    tolerance_s: float = 2.0,
) -> ClockChoice:
    """Pick the record's time and source.

    - GPS time known and the system clock off by more than tolerance_s: GPS time.
    - GPS time known and within tolerance: `ntp` if NTP is synchronised (the system
      time, confirmed by GPS), else `gps` (the system time agrees with GPS, which is
      what makes it trustworthy).
    - No GPS time: `ntp` when synchronised, else `unsynced` (system time, as is).
    """
    if gps_time is not None and gps_time < MIN_PLAUSIBLE_GPS_TIME:
        gps_time = None  # implausible (rollover bug): do not trust it over the system
    if gps_time is not None:
        offset = system_time - gps_time
        if abs(offset) > tolerance_s:
            return ClockChoice(
                "gps",
                gps_time,
                offset,
                f"system clock off by {offset:+.1f} s from GPS; using GPS time",
            )
        if ntp_synced:
            return ClockChoice("ntp", system_time, offset, "NTP synchronised; GPS agrees")
        return ClockChoice("gps", gps_time, offset, "system clock agrees with GPS; no NTP")
    if ntp_synced:
        return ClockChoice("ntp", system_time, None, "NTP synchronised; no GPS time")
    return ClockChoice("unsynced", system_time, None, "no GPS time and NTP not synchronised")


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (Linux), field sizes follow the C long."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    )


def synced_from_adjtimex(ret: int, status: int) -> bool:
    """The kernel's view (pure): synchronised unless TIME_ERROR or STA_UNSYNC."""
    return ret != TIME_ERROR and not status & STA_UNSYNC


def _adjtimex() -> bool | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fn = libc.adjtimex
    except (OSError, AttributeError):
        return None
    tx = _Timex()  # modes = 0: read only, needs no privilege
    ret = fn(ctypes.byref(tx))
    if ret < 0:
        return None
    return synced_from_adjtimex(int(ret), int(tx.status))


def _timedatectl() -> bool | None:
    exe = shutil.which("timedatectl")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip()
    return {"yes": True, "no": False}.get(value)


def ntp_synchronized() -> bool | None:
    """Is the system clock NTP-synchronised? None when this system cannot say."""
    result = _adjtimex()
    if result is None:
        result = _timedatectl()
    return result


TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


def ntp_state() -> tuple[bool | None, str]:
    """(synchronised?, who says so), for `edge doctor`: systemd's view first, as an admin
    sees it in `timedatectl`, then systemd-timesyncd's flag file, then the kernel."""
    value = _timedatectl()
    if value is not None:
        return value, "timedatectl NTPSynchronized"
    if TIMESYNCD_FLAG.exists():  # timesyncd creates it once it has synchronised
        return True, str(TIMESYNCD_FLAG)
    value = _adjtimex()
    if value is not None:
        return value, "kernel adjtimex"
    return None, "no timedatectl, timesyncd flag or adjtimex on this system"


class NtpCache:
    """ntp_synchronized(), asked at most every `ttl_s` (it forks timedatectl on some systems)."""

    def __init__(
        self, ttl_s: float = 60.0, probe: Callable[[], bool | None] = ntp_synchronized
    ) -> None:
        self.ttl_s = ttl_s
        self.probe = probe
        self._at = -1e18
        self._value: bool | None = None

    def __call__(self) -> bool | None:
        now = time.monotonic()
        if now - self._at > self.ttl_s:
            self._value = self.probe()
            self._at = now
        return self._value
