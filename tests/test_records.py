"""Records: format, signatures checked by independent Ed25519 implementations, sealing, chain."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import random
import subprocess
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox
from nacl.signing import SigningKey

from edge.keys import device_id_for
from edge.records import (
    GENESIS_HASH,
    RecordInvalid,
    build_record,
    canonical_json,
    check_signature,
    new_record_id,
    open_evidence,
    parse_record,
    record_hash,
    signed_bytes,
    verify_chain,
)
from edge.store import Store
from tests.roster_fixtures import fill_store, make_verification

SPKI_ED25519_PREFIX = bytes.fromhex("302a300506032b6570032100")


def _pem(raw_public: bytes) -> str:
    der = SPKI_ED25519_PREFIX + raw_public
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN PUBLIC KEY-----\n{body}-----END PUBLIC KEY-----\n"


@pytest.fixture
def stored(tmp_path: Path) -> tuple[SigningKey, list[dict], PrivateKey]:
    """20 records committed through the real store, then read back from SQLite."""
    key = SigningKey.generate()
    hq_box = PrivateKey.generate()
    store = Store(tmp_path / "edge.db")
    fill_store(store, key, 20, hq_box.public_key)
    records = list(store.iter_records())
    store.close()
    return key, records, hq_box


def test_stored_records_verify_with_cryptography(stored: tuple) -> None:
    key, records, _ = stored
    pub = Ed25519PublicKey.from_public_bytes(bytes(key.verify_key))
    for r in records:
        # canonical JSON rebuilt here independently of edge.records.canonical_json
        body = {k: v for k, v in r.items() if k != "sig"}
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        pub.verify(base64.b64decode(r["sig"]), data.encode("utf-8"))
    tampered = dict(records[3], kpm_id="KPM-999999")
    with pytest.raises(InvalidSignature):
        pub.verify(base64.b64decode(tampered["sig"]), signed_bytes(tampered))


def test_stored_records_verify_with_openssl(stored: tuple, tmp_path: Path) -> None:
    key, records, _ = stored
    pem = tmp_path / "device.pub.pem"
    pem.write_text(_pem(bytes(key.verify_key)))
    # the PEM must be what openssl itself derives for this key
    out = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(pem), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "ED25519 Public-Key" in out.stdout

    def verify(data: bytes, sig_b64: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "data").write_bytes(data)
        (tmp_path / "sig").write_bytes(base64.b64decode(sig_b64))
        return subprocess.run(
            [
                *("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin"),
                *("-in", str(tmp_path / "data"), "-sigfile", str(tmp_path / "sig")),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    for r in records[:8]:
        res = verify(signed_bytes(r), r["sig"])
        assert res.returncode == 0, res.stdout + res.stderr
        assert "Signature Verified Successfully" in res.stdout
    bad = bytearray(signed_bytes(records[0]))
    bad[10] ^= 0x01
    res = verify(bytes(bad), records[0]["sig"])
    assert res.returncode != 0
    assert "Verified Successfully" not in res.stdout


def test_chain_links_and_hashes(stored: tuple) -> None:
    key, records, _ = stored
    assert [r["seq"] for r in records] == list(range(1, 21))
    assert records[0]["prev_hash"] == GENESIS_HASH
    for prev, cur in itertools.pairwise(records):
        assert cur["prev_hash"] == record_hash(prev)
    count, problem = verify_chain(records, key.verify_key, device_id_for(key.verify_key))
    assert (count, problem) == (20, None)
    ids = [r["id"] for r in records]
    assert ids == sorted(ids) and len(set(ids)) == 20


def test_verify_chain_names_first_bad_seq(stored: tuple) -> None:
    key, records, _ = stored
    vk = key.verify_key
    # gap: seq 8 missing
    count, problem = verify_chain(records[:7] + records[8:], vk)
    assert count == 7 and problem is not None and problem.seq == 8 and "missing" in problem.reason
    # wrong key
    count, problem = verify_chain(records, SigningKey.generate().verify_key)
    assert count == 0 and problem is not None and problem.seq == 1
    # another device's id
    count, problem = verify_chain(records, vk, device_id="kiosk-0000000000000000")
    assert problem is not None and problem.seq == 1 and "device_id" in problem.reason
    # a field changed
    changed = [dict(r) for r in records]
    changed[12]["score"] = 0.99
    count, problem = verify_chain(changed, vk)
    assert count == 12 and problem is not None and problem.seq == 13


def test_evidence_is_sealed_to_hq_only(stored: tuple) -> None:
    key, records, hq_box = stored
    r = records[5]
    assert r["evidence"]["alg"] == "x25519-sealedbox"
    ev = open_evidence(r["evidence"], hq_box)
    assert ev.crop_jpeg.startswith(b"\xff\xd8") and len(ev.embedding) == 128 * 4
    ct = base64.b64decode(r["evidence"]["ct"])
    # neither the device key (as X25519) nor any other key opens it
    for other in (PrivateKey.generate(), key.to_curve25519_private_key()):
        with pytest.raises(CryptoError):
            SealedBox(other).decrypt(ct)
    # the plaintext embedding does not appear in the record
    assert base64.b64encode(ev.embedding).decode() not in json.dumps(r)


def test_canonical_json_is_stable() -> None:
    assert (
        canonical_json({"b": 1, "a": [1, "é"], "c": None})
        == '{"a":[1,"é"],"b":1,"c":null}'.encode()
    )
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_uuid7_ids_sort_by_time() -> None:
    ids = [new_record_id(ms) for ms in (1000, 1001, 5_000_000, 1_790_000_000_000)]
    assert ids == sorted(ids)
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)
    assert len({new_record_id(1000) for _ in range(200)}) == 200


def test_build_record_refuses_contract_breaks() -> None:
    key = SigningKey.generate()
    did = device_id_for(key.verify_key)
    for change in (
        {"programme": "bogus"},
        {"decision": "maybe"},
        {"kpm_id": "has space"},
        {"clock": "sundial"},
        {"model": "abc"},
        {"score": float("nan")},
    ):
        v = make_verification(1)
        v = v.__class__(**{**v.__dict__, **change})
        with pytest.raises(RecordInvalid):
            build_record(v, device_id=did, seq=1, prev_hash=GENESIS_HASH, key=key)
    with pytest.raises(RecordInvalid):
        build_record(make_verification(1), device_id=did, seq=0, prev_hash=GENESIS_HASH, key=key)


def test_parse_record_never_crashes_on_garbage() -> None:
    rng = random.Random(7)
    key = SigningKey.generate()
    good = build_record(
        make_verification(1),
        device_id=device_id_for(key.verify_key),
        seq=1,
        prev_hash=GENESIS_HASH,
        key=key,
    )
    payload = canonical_json(good)
    assert parse_record(payload) == good
    for _ in range(300):
        data = bytearray(payload)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        with contextlib.suppress(RecordInvalid):
            parse_record(bytes(data))
    for junk in (b"", b"[]", b"null", b"\xff\xfe", b'{"v":1}', b"1e999"):
        with pytest.raises(RecordInvalid):
            parse_record(junk)


def test_non_canonical_base64_signature_is_refused(stored: tuple) -> None:
    key, records, _ = stored
    r = dict(records[0])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sig = r["sig"]
    assert len(sig) == 88 and sig.endswith("==")
    # the 86th character carries 2 signature bits and 4 unused ones: change an unused bit
    twin = sig[:85] + alphabet[alphabet.index(sig[85]) ^ 1] + "=="
    assert base64.b64decode(twin) == base64.b64decode(sig)
    check_signature(r, key.verify_key)
    with pytest.raises(RecordInvalid, match="non-canonical"):
        check_signature({**r, "sig": twin}, key.verify_key)
