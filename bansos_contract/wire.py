"""Record payloads on the wire: canonical JSON, or raw deflate of it with a preset dictionary.

Why: on a 2G link (~100 kbit/s) bytes are the drain rate. A record's canonical JSON is about
690 B; its keys and most values repeat in every record, so deflate primed with a record-shaped
dictionary takes it to about 285 B (plain deflate: ~490 B). The signed bytes do not change:
the decoder returns exactly the canonical JSON the kiosk stored and signed, which HQ then
parses and verifies as before.

Format (pure, no I/O; HQ and the kiosk share it):
- a payload starting with ``{`` is the canonical JSON itself (what older kiosks send);
- a payload starting with byte 0x01 is ``0x01 || raw deflate(json, zdict=DICT_V1)``.
``DICT_V1`` is frozen: a different dictionary needs a new leading byte.
"""

from __future__ import annotations

import zlib

FORMAT_DEFLATE_V1 = 0x01
MAX_DECODED_BYTES = 1 << 20  # an inflated record above 1 MiB is refused (a deflate bomb)

# A record's keys in canonical (sorted) order with typical values, then the rarer values.
# Frozen: the kiosk and HQ must hold the same bytes for format 0x01.
DICT_V1 = (
    b'"decision":"no_match","decision":"poor_quality","decision":"no_face",'
    b'"decision":"not_eligible","decision":"already_served","decision":"manual",'
    b'"programme":"pkh","geofence":"outside","geofence":"unknown","clock":"ntp",'
    b'"clock":"unsynced","geo":null,"reason":"","evidence":{"alg":"x25519-sealedbox","ct":"'
    b'{"captured_at":"2026-01-01T00:00:00.000Z","clock":"gps","decision":"match",'
    b'"device_id":"kiosk-","evidence":null,"frames_used":3,"geo":{"eph_m":4.2,'
    b'"fix_age_s":0.4,"lat":-7.1,"lon":110.3,"mode":3},"geofence":"inside","id":"0190",'
    b'"kpm_id":"KPM-","model":"","officer_id":"officer-","period":"2026-11","prev_hash":"",'
    b'"programme":"sembako","reason":null,"score":0.5,"seq":1,"sig":"","threshold":0.365,"v":1}'
)


class WireError(ValueError):
    """A payload that is neither canonical JSON nor a well-formed compressed record."""


class WireTooLarge(WireError):
    """A compressed record that inflates beyond the limit."""


def encode(body: bytes) -> bytes:
    """The payload for one record: compressed when that is shorter, else the JSON itself."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=DICT_V1)
    packed = bytes([FORMAT_DEFLATE_V1]) + c.compress(body) + c.flush()
    return packed if len(packed) < len(body) else body


def decode(payload: bytes, max_bytes: int = MAX_DECODED_BYTES) -> bytes:
    """The record's JSON bytes, exactly as the kiosk stored them; WireError if malformed."""
    if not payload:
        raise WireError("empty payload")
    head = payload[0]
    if head == ord("{"):
        return payload
    if head != FORMAT_DEFLATE_V1:
        raise WireError(f"unknown payload format (first byte 0x{head:02x})")
    d = zlib.decompressobj(-15, zdict=DICT_V1)
    try:
        out = d.decompress(payload[1:], max_bytes + 1)
    except zlib.error as exc:
        raise WireError(f"bad compressed record: {exc}") from None
    if len(out) > max_bytes:
        raise WireTooLarge(f"compressed record inflates beyond {max_bytes} bytes")
    if not d.eof or d.unused_data or d.unconsumed_tail:
        raise WireError("bad compressed record: truncated or trailing bytes")
    if not out.startswith(b"{"):
        raise WireError("compressed record is not a JSON object")
    return out
