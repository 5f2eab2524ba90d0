"""Who may be served: the roster entry a request refers to, and whether aid was already given.

Pure: takes the KPM's roster entries, the periods the kiosk is serving now, the time and
a `served` lookup, and returns the entry to verify against or the refusal
(`not_eligible`, `already_served`) with its reason. Refusals come before any capture,
so a face is never taken from someone who could not be served anyway.

A `not_eligible` reason starts with a stable code (`REASONS`) followed by ": " and the
detail, so HQ can count refusals by kind while the officer reads the detail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bansos_contract.utc import iso_s as format_utc
from edge.period import newest_period, period_key
from edge.roster import RosterEntry

NOT_LISTED = "not on the list"
OTHER_PROGRAMME = "other programme"
OTHER_PERIOD = "other period"
ROSTER_EXPIRED = "roster expired"
ROSTER_NOT_YET_VALID = "roster not yet valid"
PROGRAMME_UNSAID = "programme not given"
REASONS = (
    NOT_LISTED,
    OTHER_PROGRAMME,
    OTHER_PERIOD,
    ROSTER_EXPIRED,
    ROSTER_NOT_YET_VALID,
    PROGRAMME_UNSAID,
)
ALREADY_SERVED = "already served"


@dataclass(frozen=True)
class Eligibility:
    entry: RosterEntry | None
    decision: str | None  # None: eligible, go on and verify the face
    reason: str | None
    code: str | None = None  # one of REASONS or ALREADY_SERVED
    earlier: Mapping[str, Any] | None = None  # the earlier handover, for already_served


def _refuse(entry: RosterEntry | None, code: str, detail: str) -> Eligibility:
    return Eligibility(entry, "not_eligible", f"{code}: {detail}", code)


def describe_earlier(earlier: Mapping[str, Any]) -> str:
    """'at <time> on <kiosk> at <lat,lon> (<geofence> geofence), record <id>': when and where."""
    geo = earlier.get("geo")
    place = (
        f"{float(geo['lat']):.5f},{float(geo['lon']):.5f}"
        if isinstance(geo, Mapping) and "lat" in geo and "lon" in geo
        else "no GPS fix"
    )
    return (
        f"at {earlier.get('captured_at')} on {earlier.get('device_id')} at {place} "
        f"({earlier.get('geofence')} geofence), record {earlier.get('record_id')}"
    )


def check_eligibility(
    entries: Sequence[RosterEntry],
    served: Callable[[RosterEntry], Mapping[str, Any] | None],
    programme: str | None = None,
    period: str | None = None,
    *,
    now: float | None = None,
    current: Mapping[str, str] | None = None,
) -> Eligibility:
    """Pick the entry for the programme and period being served, then check window and ledger.

    `current` maps programme -> the period the kiosk serves now (from the bundles whose
    window holds `now`); a request's `period` overrides it. Without `current`, the KPM's
    newest period is taken (the behaviour before windows existed).
    """
    if not entries:
        return _refuse(None, NOT_LISTED, "KPM is not on this kiosk's roster")
    listed = [e for e in entries if programme is None or e.programme == programme]
    if not listed:
        have = ", ".join(sorted({e.programme for e in entries}))
        return _refuse(entries[0], OTHER_PROGRAMME, f"KPM is listed for {have}, not {programme}")
    matching = _for_period(listed, period, current)
    if not matching:
        have = ", ".join(sorted({e.period for e in listed}, key=period_key, reverse=True))
        wanted = period or ", ".join(
            sorted({current[e.programme] for e in listed if current and e.programme in current})
        )
        if not wanted:  # no current bundle for this programme at all: say why
            newest = max(listed, key=lambda e: period_key(e.period))
            return _window_refusal(newest, now) or _refuse(
                newest, OTHER_PERIOD, f"KPM is listed for {have}, no current period"
            )
        return _refuse(listed[0], OTHER_PERIOD, f"KPM is listed for {have}, not {wanted}")
    if len(matching) > 1:
        names = ", ".join(sorted(e.programme for e in matching))
        return _refuse(
            matching[0],
            PROGRAMME_UNSAID,
            f"KPM is enrolled in several programmes ({names}); say which",
        )
    entry = matching[0]
    if now is not None:
        refusal = _window_refusal(entry, now)
        if refusal is not None:
            return refusal
    earlier = served(entry)
    if earlier:
        return Eligibility(
            entry,
            "already_served",
            f"{ALREADY_SERVED}: {entry.programme} {entry.period} handed over "
            f"{describe_earlier(earlier)}",
            ALREADY_SERVED,
            earlier,
        )
    return Eligibility(entry, None, None)


def _for_period(
    listed: Sequence[RosterEntry], period: str | None, current: Mapping[str, str] | None
) -> list[RosterEntry]:
    if period is not None:
        return [e for e in listed if e.period == period]
    if current is not None:
        return [e for e in listed if current.get(e.programme) == e.period]
    newest = newest_period([e.period for e in listed])
    return [e for e in listed if e.period == newest]


def _window_refusal(entry: RosterEntry, now: float | None) -> Eligibility | None:
    if now is None:
        return None
    state = entry.window_state(now)
    if state == "expired" and entry.valid_until is not None:
        return _refuse(
            entry,
            ROSTER_EXPIRED,
            f"bundle {entry.bundle_id} for {entry.programme} {entry.period} was valid until "
            f"{format_utc(entry.valid_until)}, now {format_utc(now)}",
        )
    if state == "not_yet_valid" and entry.valid_from is not None:
        return _refuse(
            entry,
            ROSTER_NOT_YET_VALID,
            f"bundle {entry.bundle_id} for {entry.programme} {entry.period} is valid from "
            f"{format_utc(entry.valid_from)}, now {format_utc(now)}",
        )
    return None
