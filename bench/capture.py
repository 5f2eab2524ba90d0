"""Capture-side costs per call, each as a ratio to a baseline measured in the same run.

Run by hand from the repo root:  .venv/bin/python -m bench.capture [--seconds 1.0]

  geofence   a 64-corner concave village polygon vs point+radius (haversine) baseline
  gpsd line  parse_report + FixTracker.feed of a TPV line vs json.loads of it
  replay     ReplayCamera.capture() over the sample faces (decoded once, cached) vs
             decoding the same JPEG with Pillow each time
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from itertools import count

import numpy as np
from PIL import Image

from edge.capture.fix import FixTracker
from edge.capture.gpsd_client import parse_report
from edge.capture.replay import DEFAULT_SAMPLES, ReplayCamera
from edge.config import CameraConfig
from edge.geo import geofence, parse_place


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of fn over about `seconds`."""
    n = 0
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        for _ in range(50):
            fn()
        n += 50
    return n / (time.perf_counter() - t0)


def village(corners: int = 64) -> dict[str, object]:
    pts = []
    for i in range(corners):
        a = 2 * math.pi * i / corners
        r = 0.01 * (1.0 if i % 2 else 0.6)  # star: concave
        pts.append([-7.715 + r * math.sin(a), 110.365 + r * math.cos(a)])
    return {"type": "polygon", "points": pts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.0)
    s = ap.parse_args(argv).seconds
    rows = []

    poly = parse_place(village())
    point = parse_place({"type": "point", "lat": -7.715, "lon": 110.365, "radius_m": 800})
    base = rate(lambda: geofence(point, -7.716, 110.366, 5.0), s)
    rows.append(
        ("geofence polygon(64)", rate(lambda: geofence(poly, -7.716, 110.366, 5.0), s), base)
    )

    line = json.dumps(
        {
            "class": "TPV",
            "mode": 3,
            "time": "2026-11-02T02:00:05.000Z",
            "lat": -7.7156,
            "lon": 110.3647,
            "eph": 4.2,
            "epx": 3.0,
            "epy": 3.1,
            "alt": 112.0,
        }
    ).encode()
    tracker = FixTracker()
    ticks = count()
    base = rate(lambda: json.loads(line), s)
    rows.append(
        (
            "gpsd TPV line -> Fix",
            rate(lambda: tracker.feed(parse_report(line) or {}, next(ticks)), s),
            base,
        )
    )

    files = sorted(DEFAULT_SAMPLES.glob("*.jpg"))
    it = count()
    base = rate(lambda: np.asarray(Image.open(files[next(it) % len(files)]).convert("RGB")), s)
    cam = ReplayCamera(CameraConfig())
    cam.start()
    rows.append(("replay capture (cached)", rate(cam.capture, s), base))
    cam.stop()

    print(f"{'what':<26}{'per s':>12}{'baseline/s':>14}{'ratio':>9}")
    for name, r, b in rows:
        print(f"{name:<26}{r:>12.0f}{b:>14.0f}{r / b:>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
