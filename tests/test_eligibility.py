"""Which roster entry a request refers to, and refusals before any face is captured."""

from __future__ import annotations

from edge.eligibility import check_eligibility
from edge.roster import RosterEntry


def entry(programme: str = "sembako", period: str = "2026-11") -> RosterEntry:
    return RosterEntry("KPM-1", programme, period, (b"\0" * 512,), None)


def test_not_in_roster() -> None:
    e = check_eligibility([], lambda _e: False)
    assert e.decision == "not_eligible" and e.entry is None


def test_newest_period_is_chosen() -> None:
    e = check_eligibility([entry(period="2026-10"), entry(period="2026-11")], lambda _e: False)
    assert e.decision is None and e.entry is not None and e.entry.period == "2026-11"


def test_already_served() -> None:
    e = check_eligibility([entry()], lambda x: x.period == "2026-11")
    assert e.decision == "already_served" and "already" in (e.reason or "")


def test_programme_filter_and_ambiguity() -> None:
    both = [entry("sembako"), entry("pkh")]
    assert check_eligibility(both, lambda _e: False).decision == "not_eligible"
    chosen = check_eligibility(both, lambda _e: False, programme="pkh")
    assert chosen.decision is None and chosen.entry is not None and chosen.entry.programme == "pkh"
    missing = check_eligibility([entry("sembako")], lambda _e: False, programme="pkh")
    assert missing.decision == "not_eligible" and "pkh" in (missing.reason or "")


def test_period_filter() -> None:
    entries = [entry(period="2026-10"), entry(period="2026-11")]
    old = check_eligibility(entries, lambda _e: False, period="2026-10")
    assert old.entry is not None and old.entry.period == "2026-10"
    assert check_eligibility(entries, lambda _e: False, period="2027-01").decision == "not_eligible"
