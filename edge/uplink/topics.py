"""Topic names in one place, so the device, HQ and the broker ACL cannot drift apart."""

from __future__ import annotations

import re
from dataclasses import dataclass

RECORDS = "records"
ACKS = "acks"
ROSTER = "roster"
STATUS = "status"

# An id goes into a topic level: no wildcards, no separators, no `$`.
_LEVEL = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


def topic(prefix: str, device_id: str, leaf: str) -> str:
    """`<prefix>/<device_id>/<leaf>`; refuses ids that would break out of their topic level."""
    if not _LEVEL.match(device_id):
        raise ValueError(f"device id {device_id!r} cannot be an MQTT topic level")
    if not _LEVEL.match(prefix):
        raise ValueError(f"topic prefix {prefix!r} must be one plain topic level")
    return f"{prefix}/{device_id}/{leaf}"


@dataclass(frozen=True)
class Topics:
    """The four topics of one kiosk."""

    records: str
    acks: str
    roster: str
    status: str

    @classmethod
    def for_device(cls, prefix: str, device_id: str) -> Topics:
        return cls(
            records=topic(prefix, device_id, RECORDS),
            acks=topic(prefix, device_id, ACKS),
            roster=topic(prefix, device_id, ROSTER),
            status=topic(prefix, device_id, STATUS),
        )


def records_filter(prefix: str = "kiosk") -> str:
    """What HQ subscribes to (wrap in `$share/<group>/` to spread load over ingest workers)."""
    return f"{prefix}/+/{RECORDS}"
