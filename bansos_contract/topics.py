"""Topic names in one place, so the device, HQ and the broker ACL cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass

from bansos_contract.ids import TOPIC_LEVEL

RECORDS = "records"
ACKS = "acks"
ROSTER = "roster"
STATUS = "status"


def topic(prefix: str, device_id: str, leaf: str) -> str:
    """`<prefix>/<device_id>/<leaf>`; refuses ids that would break out of their topic level."""
    if not TOPIC_LEVEL.match(device_id):
        raise ValueError(f"device id {device_id!r} cannot be an MQTT topic level")
    if not TOPIC_LEVEL.match(prefix):
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


def shared_filter(share_group: str, prefix: str, leaf: str) -> str:
    """`$share/<group>/<prefix>/+/<leaf>`: every kiosk's `leaf`, spread over HQ's workers."""
    return f"$share/{share_group}/{prefix}/+/{leaf}"


def device_of(topic_name: str, prefix: str, leaf: str) -> str | None:
    """The <id> of `<prefix>/<id>/<leaf>`, or None for any other topic."""
    parts = topic_name.split("/")
    if len(parts) == 3 and parts[0] == prefix and parts[2] == leaf and parts[1]:
        return parts[1]
    return None
