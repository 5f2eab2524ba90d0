"""The GPS reader against a real gpsd (gpsfake) replaying real receiver logs.

Each log's `.chk` holds what gpsd reported for it when the GPSD project recorded it
(gpsd 3.2x newer than Debian's 3.22). We compare the fixes our reader derives with
the `.chk` TPV reports: position to 1e-6 degrees, mode and time. Two differences of
gpsd 3.22 itself are allowed, and only for the gpsd release they were seen with
(checked against `gpspipe -w` on the same log, see out-capture.md):

- mtk-3329.log: its RMC dates are from 2011; gpsd 3.22 "repairs" them as a GPS
  week rollover and reports them exactly 1024 weeks later (2030-10-07).
- ublox-neo-m8n.log: 3.22 reports each epoch twice (on GGA/RMC and again at the
  end of the cycle) and once more for the partial epoch the log starts with; the
  newer gpsd reports each epoch once; 3.22 also reports the partial epochs at the
  log's start and end, which the newer one leaves out. We drop consecutive
  duplicates and fixes outside the `.chk`'s time span; the rest must match one to one.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge.capture.fix import Fix, format_gps_time, parse_gps_time
from edge.capture.gps import GpsReader
from edge.config import GpsConfig
from tests.support.data import GPS_LOGS
from tests.support.gpsd import gpsfake_server

ROLLOVER_S = 1024 * 7 * 86400
KNOWN_322: dict[str, dict[str, Any]] = {
    "mtk-3329.log": {"time_shift_s": ROLLOVER_S},
    "ublox-neo-m8n.log": {"epochs_once": True},
}
LOGS = ["mtk-3329.log", "ublox-neo-m8n.log", "quectel-l76k-nmea.log", "nmea-fuzzy-cases.log"]


def chk_fixes(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in Path(f"{log}.chk").read_text().splitlines():
        if line.startswith("{"):
            msg = json.loads(line)
            if msg["class"] == "TPV" and msg.get("mode", 0) >= 2 and "lat" in msg:
                out.append(msg)
    return out


def replay(log: Path, expect: int, timeout_s: float = 120.0) -> tuple[list[Fix], list[dict]]:
    """Replay log once through gpsfake; returns the reader's fixes and gpsd's reports.

    An attempt counts only if the reader was watching before gpsd added the device (its
    first DEVICES list is empty; otherwise it may have missed the first sentences) and
    gpsfake was still running when the expected fixes or gpsd's end-of-device report
    came (on a loaded machine gpsfake sometimes gives up early). Otherwise: try again.
    """
    problems = []
    for _attempt in range(3):
        fixes: list[Fix] = []
        reports: list[dict] = []
        done = threading.Event()

        def on_fix(fix: Fix, fixes: list[Fix] = fixes, done: threading.Event = done) -> None:
            fixes.append(fix)
            if len(fixes) >= expect:
                done.set()

        def on_report(r: dict, reports: list[dict] = reports, done: threading.Event = done) -> None:
            reports.append(r)
            if r.get("class") == "DEVICE" and r.get("activated") == 0:
                done.set()

        with gpsfake_server(log, once=True, wait=False) as fake:
            cfg = GpsConfig(
                host=fake.host, port=fake.port, reconnect_min_s=0.05, reconnect_max_s=0.1
            )
            with GpsReader(cfg, on_fix=on_fix, on_report=on_report) as reader:
                deadline = time.monotonic() + timeout_s
                while not done.wait(0.2) and time.monotonic() < deadline:
                    if fake.proc is None or fake.proc.poll() is not None:
                        break  # gpsfake ended
                if done.is_set():
                    time.sleep(1.0)  # any extra fixes after the expected ones would show here
                connects = reader.connects
            output = fake.output()
        devices = next((r for r in reports if r.get("class") == "DEVICES"), None)
        if done.is_set() and connects == 1 and devices is not None and devices.get("devices") == []:
            return fixes, reports
        problems.append(
            f"attempt: {len(fixes)}/{expect} fixes, connects {connects}, "
            f"first DEVICES {devices}, gpsfake said: {output.strip()[-300:]!r}"
        )
    pytest.fail(f"{log.name}: no clean replay in 3 attempts: " + " | ".join(problems))


def dedupe(fixes: list[Fix]) -> list[Fix]:
    out: list[Fix] = []
    for f in fixes:
        key = (f.lat, f.lon, f.mode, f.gps_time)
        if not out or key != (out[-1].lat, out[-1].lon, out[-1].mode, out[-1].gps_time):
            out.append(f)
    return out


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "ublox-neo-m8n.log" else n for n in LOGS],
)  # the u-blox log replays for ~7 s: the inner loop keeps the other three receivers
def test_reader_matches_chk(name: str) -> None:
    log = GPS_LOGS / name
    want = chk_fixes(log)
    assert want, f"{name}.chk has no TPV with a fix"
    got_raw, reports = replay(log, expect=len(want))
    version = next(r for r in reports if r.get("class") == "VERSION")["release"]
    known = KNOWN_322.get(name, {}) if version == "3.22" else {}
    shift = float(known.get("time_shift_s", 0))
    got = got_raw
    if known.get("epochs_once"):
        first_t, last_t = parse_gps_time(want[0]["time"]), parse_gps_time(want[-1]["time"])
        assert first_t is not None and last_t is not None
        got = [
            f
            for f in dedupe(got_raw)
            if f.gps_time is not None and first_t - 1e-6 <= f.gps_time <= last_t + 1e-6
        ]
    assert len(got) == len(want), f"{name}: {len(got)} fixes, .chk has {len(want)}"
    for i, (f, c) in enumerate(zip(got, want, strict=True)):
        assert abs(f.lat - c["lat"]) <= 1e-6 and abs(f.lon - c["lon"]) <= 1e-6, (i, f, c)
        assert f.mode == c["mode"], (i, f, c)
        t = None if f.gps_time is None else f.gps_time - shift
        assert format_gps_time(t) == c.get("time"), (i, format_gps_time(f.gps_time), c)
        if "eph" in c:
            assert f.eph_m == pytest.approx(c["eph"], abs=1e-3), (i, f, c)
        assert f.stale is False or f.age_s() > f.max_age_s


def test_fuzzy_log_crashes_nothing() -> None:
    """Sentences that broke parsers before: gpsd survives, the reader survives and keeps going."""
    log = GPS_LOGS / "nmea-fuzzy-cases.log"
    with gpsfake_server(log, once=False, wait=True) as fake:
        cfg = GpsConfig(host=fake.host, port=fake.port, reconnect_min_s=0.05, reconnect_max_s=0.5)
        with GpsReader(cfg) as reader:
            fix = reader.wait_for_fix(60)
            assert fix is not None
            assert reader.alive
            # a full cycle of the log later the same reader is still reading fixes
            seen = fix.received_monotonic
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                cur = reader.current()
                if cur is not None and cur.received_monotonic > seen + 2:
                    break
                time.sleep(0.1)
            assert reader.alive and reader.connects == 1
            cur = reader.current()
            assert cur is not None and 41.5 < cur.lat < 41.6 and -93.8 < cur.lon < -93.7
        assert fake.proc is not None and fake.proc.poll() is None, "gpsd died on the fuzzy log"
