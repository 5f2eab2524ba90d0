"""Parts that stop beating become problems; the watchdog depends on this."""

from __future__ import annotations

from edge.health import Health


def test_silent_part_is_a_problem() -> None:
    now = [100.0]
    h = Health(clock=lambda: now[0])
    h.register("camera", 10.0)
    h.register("uplink", 30.0)
    assert h.healthy
    now[0] += 11
    assert h.problems() == ["camera silent 11s"]
    h.beat("camera")
    assert h.healthy
    now[0] += 25
    assert [p.split()[0] for p in h.problems()] == ["camera", "uplink"]
    h.unregister("camera")
    h.beat("uplink")
    assert h.healthy


def test_beat_of_unknown_part_is_ignored() -> None:
    h = Health()
    h.beat("nothing")
    assert h.healthy
