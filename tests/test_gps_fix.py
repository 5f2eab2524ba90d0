"""The pure GPS rules: gpsd reports -> Fix, staleness, backoff, report parsing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.capture.fix import Fix, FixTracker, format_gps_time, parse_gps_time
from edge.capture.gps import next_backoff
from edge.capture.gpsd_client import parse_report

GGA_TPV = {"class": "TPV", "mode": 3, "lat": -7.7156, "lon": 110.3647, "eph": 4.5}
RMC_TPV = {**GGA_TPV, "time": "2026-11-02T02:00:05.000Z"}


def test_fix_without_time_is_accepted_then_time_arrives() -> None:
    t = FixTracker(max_age_s=10)
    fix = t.feed(GGA_TPV, now_monotonic=100.0)  # GGA before RMC: no time yet
    assert fix is not None and fix.gps_time is None and fix.mode == 3
    fix = t.feed(RMC_TPV, now_monotonic=100.5)
    assert fix is not None
    assert format_gps_time(fix.gps_time) == "2026-11-02T02:00:05.000Z"
    assert fix.gps_time_now(now_monotonic=102.5) == pytest.approx(fix.gps_time + 2.0)  # type: ignore[operator]


def test_two_d_is_marked_and_no_fix_clears() -> None:
    t = FixTracker()
    fix = t.feed({"class": "TPV", "mode": 2, "lat": -7.7, "lon": 110.3}, 1.0)
    assert fix is not None and fix.two_d and fix.eph_m is None
    assert t.feed({"class": "TPV", "mode": 1}, 2.0) is None
    assert t.fix is None  # lost the fix: no stale position lingers


def test_receiver_unplugged_clears_the_fix() -> None:
    t = FixTracker()
    t.feed(RMC_TPV, 1.0)
    t.feed({"class": "DEVICE", "path": "/dev/ttyAMA0", "activated": 0}, 2.0)
    assert t.fix is None


def test_sats_used_from_sky_and_eph_fallback() -> None:
    t = FixTracker()
    t.feed({"class": "SKY", "uSat": 9}, 0.5)
    fix = t.feed({"class": "TPV", "mode": 3, "lat": 1.0, "lon": 2.0, "epx": 3.0, "epy": 4.0}, 1.0)
    assert fix is not None and fix.sats_used == 9 and fix.eph_m == pytest.approx(5.0)
    # gpsd 3.22 SKY without uSat: count the used satellites
    t.feed({"class": "SKY", "satellites": [{"used": True}, {"used": False}, {"used": True}]}, 1.5)
    assert t.fix is not None and t.fix.sats_used == 2


@pytest.mark.parametrize(
    "report",
    [
        {"class": "TPV", "mode": 3, "lat": "x", "lon": 1.0},
        {"class": "TPV", "mode": 3, "lat": 91.0, "lon": 1.0},
        {"class": "TPV", "mode": 3, "lat": float("nan"), "lon": 1.0},
        {"class": "TPV", "mode": True, "lat": 1.0, "lon": 1.0},
        {"class": "TPV", "lat": 1.0, "lon": 1.0},
        {"class": "TPV", "mode": 3, "lat": 1.0},
        {"class": "TPV", "mode": 3, "lat": 1.0, "lon": 2.0, "time": "yesterday"},
    ],
)
def test_bad_reports_never_raise(report: dict) -> None:
    t = FixTracker()
    fix = t.feed(report, 1.0)
    if fix is not None:  # only the bad-time case yields a fix, without a time
        assert fix.gps_time is None and math.isfinite(fix.lat)


def test_stale_and_record_geo() -> None:
    fix = Fix(-7.7, 110.3, 3, 4.0, 8, None, received_monotonic=50.0, max_age_s=10.0)
    assert not fix.is_stale(55.0) and fix.is_stale(60.5)
    assert fix.record_geo(now_monotonic=53.25) == {
        "lat": -7.7,
        "lon": 110.3,
        "eph_m": 4.0,
        "mode": 3,
        "fix_age_s": 3.25,
    }
    doc = fix.to_dict(now_monotonic=61.0)
    assert doc["stale"] is True and doc["two_d"] is False and doc["time"] is None


def test_time_parsing_round_trip() -> None:
    assert parse_gps_time("2017-07-19T08:50:01.200Z") == pytest.approx(1500454201.2)
    assert format_gps_time(1500454201.2) == "2017-07-19T08:50:01.200Z"
    assert parse_gps_time("2017-07-19T08:50:01") is None  # not UTC-marked
    assert parse_gps_time(17) is None


def test_backoff_doubles_within_bounds() -> None:
    assert next_backoff(0.5, 0.5, 30) == 1.0
    assert next_backoff(20, 0.5, 30) == 30
    assert next_backoff(0.01, 0.5, 30) == 0.5


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        (b'{"class":"TPV","mode":1}', True),
        (b"$GPGGA,,,,*00", False),
        (b"{not json", False),
        (b"[1,2]", False),
        (b'{"mode":1}', False),
        (b"\xff\xfe{", False),
    ],
)
def test_parse_report(line: bytes, ok: bool) -> None:
    assert (parse_report(line) is not None) == ok


_json = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.lists(st.integers() | st.fixed_dictionaries({"used": st.booleans()}), max_size=3)
)
_reports = st.fixed_dictionaries(
    {"class": st.sampled_from(["TPV", "SKY", "DEVICE", "VERSION", "ERROR"])},
    optional={
        "mode": _json,
        "lat": _json,
        "lon": _json,
        "time": _json,
        "eph": _json,
        "epx": _json,
        "epy": _json,
        "uSat": _json,
        "satellites": _json,
        "activated": _json,
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_reports, max_size=12))
def test_any_report_sequence_never_raises(reports: list[dict]) -> None:
    t = FixTracker()
    for i, r in enumerate(reports):
        fix = t.feed(r, float(i))
        if fix is not None:
            assert -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180 and fix.mode in (2, 3)
            fix.to_dict(float(i))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_line_parses_or_is_skipped(line: bytes) -> None:
    msg = parse_report(line)
    assert msg is None or isinstance(msg.get("class"), str)
