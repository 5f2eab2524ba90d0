"""Strict parsing of HQ's acks: `{"ids": ["<uuid>", ...]}`, bounded, or refused whole.

An ack moves a record to `acked`, after which it may be purged: a lenient parser
could lose records, so anything but the exact shape is refused with a reason.
"""

from __future__ import annotations

import json
import re

MAX_ACK_BYTES = 512 * 1024
MAX_ACK_IDS = 5000
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class AckRefused(ValueError):
    """The payload is not a valid ack; the message says why (never echoes the payload)."""


def parse_acks(payload: bytes) -> list[str]:
    """The distinct record ids HQ says it stored, in payload order."""
    if len(payload) > MAX_ACK_BYTES:
        raise AckRefused(f"ack payload of {len(payload)} bytes is over {MAX_ACK_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AckRefused(f"ack is not UTF-8 JSON: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise AckRefused("ack must be a JSON object")
    if set(obj) != {"ids"}:
        raise AckRefused(f"ack must have exactly the key 'ids', got {sorted(obj)[:5]}")
    ids = obj["ids"]
    if not isinstance(ids, list):
        raise AckRefused("ack 'ids' must be a list")
    if len(ids) > MAX_ACK_IDS:
        raise AckRefused(f"ack lists {len(ids)} ids, more than {MAX_ACK_IDS}")
    seen: dict[str, None] = {}
    for i, rid in enumerate(ids):
        if not isinstance(rid, str) or not _UUID.match(rid):
            raise AckRefused(f"ack ids[{i}] is not a lowercase UUID")
        seen[rid] = None
    return list(seen)
