"""Record clock source: gps | ntp | unsynced, with the 2 s tolerance."""

from __future__ import annotations

import sys

import pytest

from edge.capture.clock import (
    MIN_PLAUSIBLE_GPS_TIME,
    STA_UNSYNC,
    TIME_ERROR,
    _adjtimex,
    choose_clock,
    ntp_synchronized,
    synced_from_adjtimex,
)

NOW = 1_793_000_000.0  # 2026-10-26


def test_gps_wins_when_system_clock_is_off() -> None:
    c = choose_clock(NOW, NOW - 3600 * 24 * 30, ntp_synced=False)  # Pi booted with an old clock
    assert c.source == "gps" and c.time == NOW
    assert c.offset_s == pytest.approx(-3600 * 24 * 30)
    assert "off by" in c.note


def test_gps_wins_even_over_ntp_beyond_tolerance() -> None:
    c = choose_clock(NOW, NOW + 2.5, ntp_synced=True)
    assert c.source == "gps" and c.time == NOW


def test_within_tolerance() -> None:
    assert choose_clock(NOW, NOW + 1.9, ntp_synced=True).source == "ntp"
    c = choose_clock(NOW, NOW + 1.9, ntp_synced=False)
    assert c.source == "gps" and c.time == NOW
    assert choose_clock(NOW, NOW + 1.9, ntp_synced=None).source == "gps"


def test_no_gps_time() -> None:
    assert choose_clock(None, NOW, ntp_synced=True).source == "ntp"
    c = choose_clock(None, NOW, ntp_synced=False)
    assert c.source == "unsynced" and c.time == NOW
    assert choose_clock(None, NOW, ntp_synced=None).source == "unsynced"


def test_implausible_gps_time_is_ignored() -> None:
    """A receiver with the week-rollover bug reports 2007: it must not move the record's time."""
    old = MIN_PLAUSIBLE_GPS_TIME - 1024 * 7 * 86400
    c = choose_clock(old, NOW, ntp_synced=False)
    assert c.source == "unsynced" and c.time == NOW


def test_tolerance_is_configurable() -> None:
    assert choose_clock(NOW, NOW + 5, ntp_synced=True, tolerance_s=10).source == "ntp"


def test_adjtimex_decoding() -> None:
    assert synced_from_adjtimex(0, 0) is True
    assert synced_from_adjtimex(TIME_ERROR, 0) is False
    assert synced_from_adjtimex(0, STA_UNSYNC) is False


def test_ntp_synchronized_answers_on_linux() -> None:
    """adjtimex(2) read-only needs no privilege: the kernel always answers on Linux."""
    assert sys.platform.startswith("linux")
    got = _adjtimex()
    assert isinstance(got, bool)
    assert ntp_synchronized() is got
