"""Compact records on the wire (edge.uplink.wire) and HQ's side of it. About 2 s."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from edge_hq.checks import Accepted, check_message
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.keys import device_id_for
from edge.store import Store
from edge.uplink.wire import DICT_V1, FORMAT_DEFLATE_V1, WireError, WireTooLarge, decode, encode
from tests.roster_fixtures import fill_store


def bodies(tmp_path: Path, evidence: bool, n: int = 60) -> tuple[SigningKey, list[bytes]]:
    key = SigningKey.generate()
    store = Store(tmp_path / f"e-{evidence}.db")
    with store.transaction():
        fill_store(store, key, n, PrivateKey.generate().public_key if evidence else None)
    rows = store.conn.execute("SELECT body FROM records ORDER BY seq").fetchall()
    store.close()
    return key, [str(b).encode() for (b,) in rows]


@pytest.mark.parametrize("evidence", [False, True])
def test_roundtrip_is_exact_and_hq_verifies(tmp_path: Path, evidence: bool) -> None:
    key, bs = bodies(tmp_path, evidence)
    did = device_id_for(key.verify_key)
    packed = [encode(b) for b in bs]
    assert all(p[0] == FORMAT_DEFLATE_V1 for p in packed)
    assert [decode(p) for p in packed] == bs  # the signed canonical bytes, exactly
    for p in packed[:10]:
        verdict = check_message(decode(p), did, lambda _d: key.verify_key)
        assert isinstance(verdict, Accepted)
    ratio = sum(map(len, packed)) / sum(map(len, bs))
    # measured: ~0.42 without evidence (687 -> ~285 B); sealed evidence is random bytes in
    # base64, which deflate only brings back towards binary (~0.75)
    assert ratio < (0.5 if not evidence else 0.85), ratio


def test_json_passes_through_and_incompressible_stays_json() -> None:
    body = b"{}"
    assert encode(body) == body  # not worth compressing: sent as is
    assert decode(body) == body  # what an older kiosk sends is still accepted


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=DICT_V1)
    return bytes([FORMAT_DEFLATE_V1]) + c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"", "empty"),
        (b"\x02abc", "unknown payload format (first byte 0x02)"),
        (b"[1,2]", "unknown payload format"),
        (b"\x01\xff\xfe\xfd", "bad compressed record"),
        (_deflate(b'{"a":1}')[:-2], "truncated"),
        (_deflate(b'{"a":1}') + b"junk", "trailing"),
        (_deflate(b"[1]"), "not a JSON object"),
        (_deflate(b"{" + b" " * (2 << 20) + b"}"), "inflates beyond"),
    ],
)
def test_bad_payloads_are_refused_with_reason(payload: bytes, says: str) -> None:
    with pytest.raises(WireError) as err:
        decode(payload)
    assert says in str(err.value)


def test_bomb_is_too_large_not_malformed() -> None:
    with pytest.raises(WireTooLarge):
        decode(_deflate(b"{" + b" " * 5000 + b"}"), max_bytes=4096)


def test_dictionary_is_frozen() -> None:
    # Format 0x01 means exactly these bytes at both ends; changing them needs a new format.
    import hashlib

    assert hashlib.sha256(DICT_V1).hexdigest()[:16] == FROZEN_DICT_SHA
    assert json.loads(DICT_V1[DICT_V1.index(b'{"captured_at"') :])["v"] == 1


FROZEN_DICT_SHA = "b1598db4c82a9765"
