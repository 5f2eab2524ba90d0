"""HQ's acks: `{"v":1,"type":"ack","device_id":...,"ids":[...],"sig":...}`, signed by HQ.

An ack moves a record to `acked`, after which it may be purged: it must mean "stored at
HQ". So HQ signs each ack with its Ed25519 signing key (the one that signs rosters; the
kiosk has its public half as `hq.signing_public_key`) over the canonical JSON of all other
keys, and names the device it is for, so an ack for kiosk B is refused by kiosk A.
`"type": "ack"` keeps an ack from ever verifying as a roster bundle (and the other way
round). Unsigned acks (`{"ids": [...]}`, the format before signing) are refused: a kiosk
must never move records to `acked` on anyone's word but HQ's. Anything but the exact
shape is refused whole, with a reason that never echoes the payload.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from bansos_contract.canonical import b64, canonical_json, unb64
from bansos_contract.ids import UUID

ACK_VERSION = 1
ACK_TYPE = "ack"
MAX_ACK_BYTES = 512 * 1024
MAX_ACK_IDS = 5000
_KEYS = {"v", "type", "device_id", "ids", "sig"}


class AckRefused(ValueError):
    """The payload is not a valid ack; the message says why (never echoes the payload)."""


def sign_ack(device_id: str, ids: Sequence[str], key: SigningKey) -> bytes:
    """HQ's ack for `device_id`: the ids it has stored, signed (canonical JSON bytes)."""
    body = {"v": ACK_VERSION, "type": ACK_TYPE, "device_id": device_id, "ids": list(ids)}
    return canonical_json({**body, "sig": b64(key.sign(canonical_json(body)).signature)})


def parse_acks(payload: bytes, device_id: str, hq_key: VerifyKey | None) -> list[str]:
    """The distinct record ids HQ says it stored for `device_id`, in payload order."""
    if len(payload) > MAX_ACK_BYTES:
        raise AckRefused(f"ack payload of {len(payload)} bytes is over {MAX_ACK_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AckRefused(f"ack is not UTF-8 JSON: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise AckRefused("ack must be a JSON object")
    if set(obj) == {"ids"}:
        raise AckRefused("unsigned ack refused (HQ signs every ack)")
    if set(obj) != _KEYS:
        raise AckRefused(f"ack must have exactly the keys {sorted(_KEYS)}, got {sorted(obj)[:6]}")
    if obj["v"] != ACK_VERSION or obj["type"] != ACK_TYPE:
        raise AckRefused(f"ack must have v {ACK_VERSION} and type {ACK_TYPE!r}")
    if hq_key is None:
        raise AckRefused(
            "no HQ signing key configured ([hq] signing_public_key): cannot check acks"
        )
    sig = obj["sig"]
    try:
        if not isinstance(sig, str):
            raise ValueError("sig")
        hq_key.verify(canonical_json({k: v for k, v in obj.items() if k != "sig"}), unb64(sig))
    except (BadSignatureError, ValueError, TypeError):
        raise AckRefused("ack is not signed by the configured HQ key") from None
    if obj["device_id"] != device_id:
        raise AckRefused(f"ack is for another device ({str(obj['device_id'])[:64]!r})")
    ids = obj["ids"]
    if not isinstance(ids, list):
        raise AckRefused("ack 'ids' must be a list")
    if len(ids) > MAX_ACK_IDS:
        raise AckRefused(f"ack lists {len(ids)} ids, more than {MAX_ACK_IDS}")
    seen: dict[str, None] = {}
    for i, rid in enumerate(ids):
        if not isinstance(rid, str) or not UUID.match(rid):
            raise AckRefused(f"ack ids[{i}] is not a lowercase UUID")
        seen[rid] = None
    return list(seen)
