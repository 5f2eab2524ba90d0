"""The record's canonical form: the exact bytes that are hashed, signed and chained."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS_HASH = "0" * 64  # prev_hash of a device's record seq 1


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN: the bytes that are hashed and signed."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signed_bytes(record: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a signed object without its `sig`."""
    return canonical_json({k: v for k, v in record.items() if k != "sig"})


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of the record's signed bytes: the next record's prev_hash."""
    return hashlib.sha256(signed_bytes(record)).hexdigest()


def b64(data: bytes) -> str:
    """Standard base64 text, as signatures and keys travel in JSON."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str = "value") -> bytes:
    """Strict base64 decode; ValueError naming `what` (never the text) when it is not."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
