"""The id patterns both ends check: one definition each.

- `TEXT_ID`: KPM, officer and device ids written by people or HQ (roster, records, UI).
- `RECORD_ID`: a record id, a lowercase UUIDv7 (time-ordered).
- `UUID`: any lowercase UUID (what an ack may list; the record checks say v7).
- `HEX64`: a SHA-256 in lowercase hex (model hashes, chain hashes).
- `TOPIC_LEVEL`: an id that may stand as one MQTT topic level (no `/`, `+`, `#`, `$`).
"""

from __future__ import annotations

import re

TEXT_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,64}\Z")
RECORD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


def is_text_id(value: object) -> bool:
    """True for a str that matches TEXT_ID."""
    return isinstance(value, str) and TEXT_ID.match(value) is not None
