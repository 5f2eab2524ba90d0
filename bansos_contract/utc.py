"""UTC time as text, the two forms the contract uses, written once.

- `iso_ms`: `YYYY-MM-DDTHH:MM:SS.mmmZ` (records' `captured_at`, heads, GPS fix times);
  milliseconds are truncated, never rounded up into the next second.
- `iso_s`: `YYYY-MM-DDTHH:MM:SSZ` (roster bundles' windows and issue times).
- `parse`: either form (up to 6 fractional digits) back to Unix seconds, strictly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z\Z")


def iso_ms(ts: float) -> str:
    """Unix seconds as UTC with milliseconds and a Z."""
    return (
        datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(ts * 1000) % 1000:03d}Z"
    )


def iso_s(ts: float) -> str:
    """Unix seconds as UTC to the second, with a Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: Any) -> float:
    """`YYYY-MM-DDTHH:MM:SS[.ffffff]Z` -> Unix seconds; ValueError otherwise."""
    expected = f"expected UTC time YYYY-MM-DDTHH:MM:SSZ, got {text!r}"
    if not isinstance(text, str) or not _UTC.match(text):
        raise ValueError(expected)
    fmt = "%Y-%m-%dT%H:%M:%S" + (".%f" if "." in text else "")
    try:
        moment = datetime.strptime(text[:-1], fmt)
    except ValueError:  # e.g. 30 February
        raise ValueError(expected) from None
    return moment.replace(tzinfo=UTC).timestamp()
