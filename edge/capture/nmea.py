"""Write NMEA 0183 tracks (GGA, GSA, RMC) for demos and tests: pure text generation.

The bundled edge/samples/track.nmea comes from `python -m edge.capture.nmea` (a short
walk through a village near Sleman, Yogyakarta). The demo can stamp a fresh copy with
today's time (`--start now`) so that records replayed through gpsfake carry a
plausible GPS time.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

# A walk along a village road near Sleman, Yogyakarta (southern hemisphere, east).
VILLAGE_TRACK: tuple[tuple[float, float], ...] = (
    (-7.715600, 110.364700),
    (-7.715640, 110.364760),
    (-7.715690, 110.364830),
    (-7.715730, 110.364900),
    (-7.715770, 110.364980),
    (-7.715800, 110.365050),
)
DEFAULT_START = datetime(2026, 11, 2, 2, 0, 0, tzinfo=UTC)  # 09:00 WIB


def checksum(body: str) -> str:
    """XOR of the characters between $ and * (two hex digits)."""
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"{c:02X}"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body)}"


def _lat(lat: float) -> tuple[str, str]:
    a = abs(lat)
    deg = int(a)
    return f"{deg:02d}{(a - deg) * 60:08.5f}", "N" if lat >= 0 else "S"


def _lon(lon: float) -> tuple[str, str]:
    a = abs(lon)
    deg = int(a)
    return f"{deg:03d}{(a - deg) * 60:08.5f}", "E" if lon >= 0 else "W"


@dataclass(frozen=True)
class Epoch:
    t: datetime
    lat: float
    lon: float
    fix: int  # 0 none, 2 2D, 3 3D
    sats: int
    hdop: float
    alt_m: float = 112.0


# (PRN, elevation, azimuth, SNR) of the satellites in view; gpsd derives DOPs from these
SKY: tuple[tuple[int, int, int, int], ...] = (
    (3, 62, 41, 44),
    (6, 35, 300, 40),
    (11, 18, 120, 33),
    (14, 77, 212, 46),
    (17, 24, 66, 36),
    (19, 51, 160, 42),
    (22, 12, 250, 29),
    (24, 43, 345, 41),
    (28, 30, 190, 38),
    (32, 9, 15, 25),
)


def gsv_sentences(sats: Sequence[tuple[int, int, int, int]] = SKY) -> list[str]:
    """Satellites in view, four per sentence."""
    groups = [sats[i : i + 4] for i in range(0, len(sats), 4)]
    out = []
    for n, group in enumerate(groups, 1):
        fields = ",".join(f"{p:02d},{el:02d},{az:03d},{snr:02d}" for p, el, az, snr in group)
        out.append(sentence(f"GPGSV,{len(groups)},{n},{len(sats):02d},{fields}"))
    return out


def epoch_sentences(e: Epoch) -> list[str]:
    """GGA, GSA, GSV, RMC for one epoch (the order many receivers use)."""
    hhmmss = e.t.strftime("%H%M%S") + f".{e.t.microsecond // 10000:02d}"
    ddmmyy = e.t.strftime("%d%m%y")
    lat, ns = _lat(e.lat)
    lon, ew = _lon(e.lon)
    if e.fix == 0:
        gga = f"GPGGA,{hhmmss},,,,,0,00,99.99,,M,,M,,"
        gsa = "GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99"
        rmc = f"GPRMC,{hhmmss},V,,,,,,,{ddmmyy},,,N"
        return [sentence(gga), sentence(gsa), *gsv_sentences(), sentence(rmc)]
    prns = [f"{p:02d}" for p, _el, _az, _snr in SKY][: e.sats]
    used = ",".join(prns + [""] * (12 - len(prns)))
    pdop, vdop = e.hdop * 1.6, e.hdop * 1.3
    alt = f"{e.alt_m:.1f}" if e.fix == 3 else ""
    gga = f"GPGGA,{hhmmss},{lat},{ns},{lon},{ew},1,{e.sats:02d},{e.hdop:.2f},{alt},M,27.9,M,,"
    gsa = f"GPGSA,A,{e.fix},{used},{pdop:.2f},{e.hdop:.2f},{vdop:.2f}"
    rmc = f"GPRMC,{hhmmss},A,{lat},{ns},{lon},{ew},0.80,118.0,{ddmmyy},,,A"
    return [sentence(gga), sentence(gsa), *gsv_sentences(), sentence(rmc)]


def village_epochs(
    start: datetime = DEFAULT_START,
    track: Sequence[tuple[float, float]] = VILLAGE_TRACK,
    seconds: int = 30,
) -> Iterator[Epoch]:
    """No fix for 2 s, a 2D fix for 3 s, then 3D, walking the track back and forth."""
    n = len(track)
    for i in range(seconds):
        k = i % (2 * n - 2)
        lat, lon = track[k if k < n else 2 * n - 2 - k]
        fix = 0 if i < 2 else (2 if i < 5 else 3)
        sats = 0 if fix == 0 else (4 if fix == 2 else 8)
        hdop = 2.8 if fix == 2 else 0.9 + 0.1 * math.sin(i)
        yield Epoch(start + timedelta(seconds=i), lat, lon, fix, sats, round(hdop, 2))


def render(epochs: Sequence[Epoch] | Iterator[Epoch]) -> str:
    lines = ["# bansos-edge demo track: a village road near Sleman, Yogyakarta (generated)"]
    for e in epochs:
        lines.extend(epoch_sentences(e))
    return "\r\n".join(lines) + "\r\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the demo NMEA track.")
    ap.add_argument("out", type=Path)
    ap.add_argument("--start", default=None, help="UTC start (ISO 8601) or 'now'")
    ap.add_argument("--seconds", type=int, default=30)
    args = ap.parse_args(argv)
    if args.start is None:
        start = DEFAULT_START
    elif args.start == "now":
        start = datetime.now(UTC).replace(microsecond=0)
    else:
        try:
            start = datetime.fromisoformat(args.start.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            sys.stderr.write(f"--start: expected ISO 8601 or 'now', got {args.start!r}\n")
            return 2
    args.out.write_text(render(village_epochs(start, seconds=args.seconds)), encoding="ascii")
    return 0


if __name__ == "__main__":
    sys.exit(main())
