"""Pure rules the field tuning added to edge.uplink.policy: the byte window, the stall verdict."""

from __future__ import annotations

from edge.uplink.policy import stalled, window_fits


def test_window_counts_and_weighs() -> None:
    assert window_fits(0, 0, 10_000_000, 100, 48_000)  # the first always goes, however big
    assert window_fits(5, 40_000, 8_000, 100, 48_000)
    assert not window_fits(5, 40_001, 8_000, 100, 48_000)  # over the byte budget
    assert not window_fits(100, 0, 1, 100, 48_000)  # the count window is full
    assert window_fits(99, 47_000, 1_000, 100, 48_000)


def test_stall_only_with_something_in_flight() -> None:
    assert not stalled(1000.0, None, 15.0)  # nothing in flight: the keepalive's job
    assert not stalled(1014.9, 1000.0, 15.0)
    assert stalled(1015.0, 1000.0, 15.0)
