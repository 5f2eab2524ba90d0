"""Which roster entry a request refers to, and refusals before any face is captured (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from bansos_contract.utc import parse as parse_utc
from edge.eligibility import (
    NOT_LISTED,
    OTHER_PERIOD,
    OTHER_PROGRAMME,
    PROGRAMME_UNSAID,
    ROSTER_EXPIRED,
    ROSTER_NOT_YET_VALID,
    check_eligibility,
    describe_earlier,
)
from edge.roster import RosterEntry

NOV_FROM = parse_utc("2026-11-01T00:00:00Z")
NOV_UNTIL = parse_utc("2026-12-01T00:00:00Z")
MID_NOV = parse_utc("2026-11-15T08:00:00Z")


def entry(
    programme: str = "sembako",
    period: str = "2026-11",
    window: tuple[float, float] | None = (NOV_FROM, NOV_UNTIL),
) -> RosterEntry:
    lo, hi = window if window else (None, None)
    return RosterEntry("KPM-1", programme, period, (b"\0" * 512,), None, (), lo, hi, "b-1")


def never(_e: RosterEntry) -> None:
    return None


EARLIER: dict[str, Any] = {
    "record_id": "0193-aaaa",
    "seq": 4,
    "device_id": "kiosk-00112233aabbccdd",
    "captured_at": "2026-11-10T09:30:00.000Z",
    "decision": "match",
    "geo": {"lat": -7.123456, "lon": 110.4, "eph_m": 5.0, "mode": 3, "fix_age_s": 0.2},
    "geofence": "inside",
}


def test_not_in_roster() -> None:
    e = check_eligibility([], never, now=MID_NOV, current={"sembako": "2026-11"})
    assert e.decision == "not_eligible" and e.entry is None and e.code == NOT_LISTED
    assert e.reason == "not on the list: KPM is not on this kiosk's roster"


def test_newest_period_is_chosen_without_windows() -> None:
    e = check_eligibility([entry(period="2026-10"), entry(period="2026-11")], never)
    assert e.decision is None and e.entry is not None and e.entry.period == "2026-11"


def test_current_period_comes_from_the_valid_bundles() -> None:
    entries = [entry(period="2026-10"), entry(period="2026-11")]
    e = check_eligibility(entries, never, now=MID_NOV, current={"sembako": "2026-11"})
    assert e.decision is None and e.entry is not None and e.entry.period == "2026-11"
    only_old = [entry(period="2026-10", window=(NOV_FROM - 31 * 86400, NOV_FROM))]
    e = check_eligibility(only_old, never, now=MID_NOV, current={"sembako": "2026-11"})
    assert e.code == OTHER_PERIOD and e.reason == (
        "other period: KPM is listed for 2026-10, not 2026-11"
    )


def test_already_served_names_when_and_where() -> None:
    e = check_eligibility(
        [entry()], lambda x: EARLIER if x.period == "2026-11" else None, now=MID_NOV
    )
    assert e.decision == "already_served" and e.earlier == EARLIER
    assert e.reason == (
        "already served: sembako 2026-11 handed over at 2026-11-10T09:30:00.000Z on "
        "kiosk-00112233aabbccdd at -7.12346,110.40000 (inside geofence), record 0193-aaaa"
    )
    assert "no GPS fix" in describe_earlier({**EARLIER, "geo": None})


def test_other_programme() -> None:
    e = check_eligibility([entry("sembako")], never, programme="pkh", now=MID_NOV)
    assert e.code == OTHER_PROGRAMME and e.decision == "not_eligible"
    assert e.reason == "other programme: KPM is listed for sembako, not pkh"


def test_programme_must_be_said_when_enrolled_in_two() -> None:
    both = [entry("sembako"), entry("pkh")]
    current = {"sembako": "2026-11", "pkh": "2026-11"}
    e = check_eligibility(both, never, now=MID_NOV, current=current)
    assert e.code == PROGRAMME_UNSAID and "pkh, sembako" in (e.reason or "")
    chosen = check_eligibility(both, never, programme="pkh", now=MID_NOV, current=current)
    assert chosen.decision is None and chosen.entry is not None and chosen.entry.programme == "pkh"


def test_other_period_requested() -> None:
    entries = [entry(period="2026-10"), entry(period="2026-11")]
    e = check_eligibility(entries, never, period="2027-01", now=MID_NOV)
    assert e.code == OTHER_PERIOD
    assert e.reason == "other period: KPM is listed for 2026-11, 2026-10, not 2027-01"


@pytest.mark.parametrize(
    ("now", "code", "words"),
    [
        (NOV_UNTIL, ROSTER_EXPIRED, "valid until 2026-12-01T00:00:00Z, now 2026-12-01T00:00:00Z"),
        (NOV_FROM - 1, ROSTER_NOT_YET_VALID, "valid from 2026-11-01T00:00:00Z"),
    ],
)
def test_roster_window(now: float, code: str, words: str) -> None:
    # no bundle is current (current = {}), or the request names the period: same refusal
    kws: list[dict[str, Any]] = [{"current": {}}, {"period": "2026-11", "current": {}}]
    for kw in kws:
        e = check_eligibility([entry()], never, now=now, **kw)
        assert e.decision == "not_eligible" and e.code == code, e
        assert e.reason is not None and e.reason.startswith(code + ": bundle b-1 ")
        assert words in e.reason


def test_window_edges_are_half_open() -> None:
    assert check_eligibility([entry()], never, now=NOV_FROM).decision is None
    assert check_eligibility([entry()], never, now=NOV_UNTIL - 0.001).decision is None
    assert check_eligibility([entry(window=None)], never, now=0.0).decision is None
