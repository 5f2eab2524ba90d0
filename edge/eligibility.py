"""Who may be served: the roster entry a request refers to, and whether aid was already given.

Pure: takes the KPM's roster entries and a `served` predicate, returns the entry to
verify against or the decision (`not_eligible`, `already_served`) with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge.roster import RosterEntry


@dataclass(frozen=True)
class Eligibility:
    entry: RosterEntry | None
    decision: str | None  # None: eligible, go on and verify the face
    reason: str | None


def check_eligibility(
    entries: Sequence[RosterEntry],
    served: Callable[[RosterEntry], bool],
    programme: str | None = None,
    period: str | None = None,
) -> Eligibility:
    """Pick the entry (by programme/period when given, else the newest period) and check it."""
    if not entries:
        return Eligibility(None, "not_eligible", "KPM is not in this kiosk's roster")
    matching = [
        e
        for e in entries
        if (programme is None or e.programme == programme)
        and (period is None or e.period == period)
    ]
    if not matching:
        wanted = "/".join(x for x in (programme, period) if x)
        return Eligibility(entries[0], "not_eligible", f"KPM has no roster entry for {wanted}")
    newest = max(e.period for e in matching)
    current = [e for e in matching if e.period == newest]
    if len(current) > 1 and programme is None:
        names = ", ".join(sorted(e.programme for e in current))
        return Eligibility(
            current[0],
            "not_eligible",
            f"KPM is enrolled in several programmes ({names}); say which",
        )
    entry = current[0]
    if served(entry):
        return Eligibility(
            entry, "already_served", f"{entry.programme} {entry.period} already handed over"
        )
    return Eligibility(entry, None, None)
