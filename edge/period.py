"""Distribution periods: `YYYY-MM` (a calendar month), validated wherever one enters.

A period is compared as (year, month), never as free text: before this check a roster
built with `December` sorted after `2026-12` under a string MAX.
"""

from __future__ import annotations

import re

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])\Z")
PERIOD_FORMAT = "YYYY-MM (e.g. 2026-11)"


def is_period(value: object) -> bool:
    return isinstance(value, str) and bool(_PERIOD.match(value))


def period_problem(value: object) -> str | None:
    """None when `value` is a valid period, else what is wrong (for a message)."""
    if is_period(value):
        return None
    return f"expected a period {PERIOD_FORMAT}, got {value!r}"


def period_key(value: str) -> tuple[int, int]:
    """Sort key: (year, month); anything that is not a period sorts before every period."""
    m = _PERIOD.match(value)
    return (int(m.group(1)), int(m.group(2))) if m else (-1, -1)


def newest_period(values: list[str]) -> str:
    return max(values, key=period_key)
