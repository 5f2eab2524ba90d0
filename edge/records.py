"""The verification record: build, sign, chain, seal evidence, check. Pure: no SQLite, no MQTT.

Signed bytes are the canonical JSON (sorted keys, no spaces, UTF-8) of the record
without `sig`; `prev_hash` is the SHA-256 of the previous record's signed bytes.
"""

from __future__ import annotations

import json
import math
import os
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.public import PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

from bansos_contract.canonical import (
    GENESIS_HASH,
    b64,
    canonical_json,
    record_hash,
    signed_bytes,
    unb64,
)
from bansos_contract.ids import HEX64 as _HEX64
from bansos_contract.ids import RECORD_ID as _ID_RE
from bansos_contract.ids import TEXT_ID as _TEXT_ID
from bansos_contract.utc import iso_ms as utc_iso

SCHEMA_VERSION = 2  # 2 added `liveness` and `camera`; version 1 records still verify
CAMERAS = ("picamera2", "replay")
SCHEMA_VERSIONS = (1, 2)
PROGRAMMES = ("sembako", "pkh")
# A record may also say `unknown`: a `not_eligible` for a KPM that is on no roster entry,
# asked without a programme (rosters and requests only ever name PROGRAMMES).
NO_PROGRAMME = "unknown"
RECORD_PROGRAMMES = (*PROGRAMMES, NO_PROGRAMME)
DECISIONS = (
    "match",
    "no_match",
    "spoof",
    "no_face",
    "poor_quality",
    "not_eligible",
    "already_served",
    "manual",
)
# failed face checks: each counts towards the attempt limit and opens the manual route
FAILED_DECISIONS = ("no_match", "spoof", "no_face", "poor_quality")
CLOCKS = ("gps", "ntp", "unsynced")
GEOFENCE = ("inside", "outside", "unknown")
EVIDENCE_ALG = "x25519-sealedbox"
# control, format (bidi overrides), line/paragraph separators, surrogates
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def control_character(text: str) -> str | None:
    """The first character of `text` no free-text record field may hold (NUL, newline,
    bidi override...), as U+XXXX, or None."""
    for c in text:
        if unicodedata.category(c) in _CONTROL_CATEGORIES:
            return f"U+{ord(c):04X}"
    return None


class RecordInvalid(ValueError):
    """A record fails a check; `reason` says which."""


def new_record_id(now_ms: int | None = None) -> str:
    """A UUIDv7: 48 bits of Unix milliseconds then randomness, so ids sort by time."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class Evidence:
    """What HQ may review: the aligned face crop (JPEG) and the embedding (float32 bytes)."""

    crop_jpeg: bytes
    embedding: bytes


def seal_evidence(evidence: Evidence, hq_box_key: PublicKey) -> dict[str, str]:
    """Seal to HQ's X25519 key; the device keeps no key that opens it."""
    payload = canonical_json(
        {"crop_jpeg": b64(evidence.crop_jpeg), "embedding_f32": b64(evidence.embedding)}
    )
    return {"alg": EVIDENCE_ALG, "ct": b64(SealedBox(hq_box_key).encrypt(payload))}


def open_evidence(sealed: Mapping[str, Any], box_private: Any) -> Evidence:
    """HQ only: unseal evidence with HQ's private X25519 key."""
    data = json.loads(SealedBox(box_private).decrypt(unb64(str(sealed["ct"]), "evidence")))
    return Evidence(unb64(data["crop_jpeg"]), unb64(data["embedding_f32"]))


@dataclass(frozen=True)
class Verification:
    """What the decision produced, before it becomes a chained, signed record."""

    kpm_id: str
    programme: str
    period: str
    officer_id: str
    decision: str
    score: float | None
    threshold: float | None
    model: str
    captured_at: float
    clock: str
    geo: dict[str, Any] | None
    geofence: str
    frames_used: int = 0
    reason: str | None = None
    evidence: dict[str, str] | None = None
    # PAD over the burst: score, threshold, frames judged/live/needed, model sha256s
    liveness: dict[str, Any] | None = None
    # the camera backend whose frames were judged (null when no frame was taken); HQ flags
    # `replay`: files played to the pipeline, not a person in front of a camera
    camera: str | None = None


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value):
        raise RecordInvalid("score and threshold must be finite numbers")
    return round(float(value), 6)


def build_record(
    v: Verification,
    *,
    device_id: str,
    seq: int,
    prev_hash: str,
    key: SigningKey,
    record_id: str | None = None,
) -> dict[str, Any]:
    """A signed record ready to store; raises RecordInvalid if the fields break the contract."""
    geo = None
    if v.geo is not None:
        geo = {k: (_round(x) if isinstance(x, float) else x) for k, x in v.geo.items()}
    record: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "id": record_id or new_record_id(int(v.captured_at * 1000)),
        "device_id": device_id,
        "seq": seq,
        "prev_hash": prev_hash,
        "kpm_id": v.kpm_id,
        "programme": v.programme,
        "period": v.period,
        "officer_id": v.officer_id,
        "decision": v.decision,
        "reason": v.reason,
        "score": _round(v.score),
        "threshold": _round(v.threshold),
        "model": v.model,
        "captured_at": utc_iso(v.captured_at),
        "clock": v.clock,
        "geo": geo,
        "geofence": v.geofence,
        "frames_used": v.frames_used,
        "evidence": v.evidence,
        "liveness": v.liveness,
        "camera": v.camera,
    }
    check_fields(record)
    record["sig"] = b64(key.sign(signed_bytes(record)).signature)
    return record


def _need(cond: bool, reason: str) -> None:
    if not cond:
        raise RecordInvalid(reason)


def check_fields(record: Mapping[str, Any]) -> None:
    """Strict shape check of a record (without judging its signature)."""
    version = _check_keys(record)
    _check_values(record)
    _check_geo_evidence(record)
    _need(version >= 2 or record["decision"] != "spoof", "decision: spoof needs schema v2")
    if version >= 2:
        check_liveness(record["liveness"], str(record["decision"]))
        _need(record["camera"] is None or record["camera"] in CAMERAS, "camera: unknown backend")


def _check_keys(record: Mapping[str, Any]) -> int:
    """A known schema version and exactly its fields; returns the version."""
    raw_version = record.get("v")
    _need(
        isinstance(raw_version, int)
        and not isinstance(raw_version, bool)
        and raw_version in SCHEMA_VERSIONS,
        f"unsupported schema version {raw_version!r}",
    )
    version = int(str(raw_version))
    expected = set(_FIELDS_V1) | ({"liveness", "camera"} if version >= 2 else set())
    keys = set(record) - {"sig"}
    _need(not (expected - keys), f"missing fields: {', '.join(sorted(expected - keys))}")
    _need(not (keys - expected), f"unknown fields: {', '.join(sorted(keys - expected))}")
    return version


def _check_values(record: Mapping[str, Any]) -> None:
    """Ids, sequence, hashes, the enumerations, the reason text and the numbers."""
    _need(isinstance(record["id"], str) and bool(_ID_RE.match(record["id"])), "id: not a UUIDv7")
    for name in ("device_id", "kpm_id", "officer_id", "period"):
        value = record[name]
        _need(isinstance(value, str) and bool(_TEXT_ID.match(value)), f"{name}: invalid {value!r}")
    seq = record["seq"]
    _need(isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1, "seq: expected >= 1")
    for name in ("prev_hash", "model"):
        _need(
            isinstance(record[name], str) and bool(_HEX64.match(record[name])),
            f"{name}: not hex sha256",
        )
    _need(record["programme"] in RECORD_PROGRAMMES, f"programme: {record['programme']!r}")
    _need(
        record["programme"] != NO_PROGRAMME or record["decision"] == "not_eligible",
        "programme: unknown is only for not_eligible",
    )
    _need(record["decision"] in DECISIONS, f"decision: {record['decision']!r}")
    _need(record["clock"] in CLOCKS, f"clock: {record['clock']!r}")
    _need(record["geofence"] in GEOFENCE, f"geofence: {record['geofence']!r}")
    _need(record["reason"] is None or isinstance(record["reason"], str), "reason: expected text")
    bad = control_character(record["reason"]) if isinstance(record["reason"], str) else None
    _need(bad is None, f"reason: control character {bad}")
    for name in ("score", "threshold"):
        x = record[name]
        _need(
            x is None or (isinstance(x, int | float) and not isinstance(x, bool)), f"{name}: number"
        )
    fu = record["frames_used"]
    _need(
        isinstance(fu, int) and not isinstance(fu, bool) and fu >= 0, "frames_used: expected >= 0"
    )
    _need(
        isinstance(record["captured_at"], str) and record["captured_at"].endswith("Z"),
        "captured_at",
    )


def _check_geo_evidence(record: Mapping[str, Any]) -> None:
    """The geotag (or null) and the sealed evidence (or null): shape only."""
    geo = record["geo"]
    if geo is not None:
        _need(isinstance(geo, dict), "geo: expected an object or null")
        _need({"lat", "lon", "eph_m", "mode", "fix_age_s"} <= set(geo), "geo: missing keys")
        _need(isinstance(geo["lat"], int | float) and -90 <= geo["lat"] <= 90, "geo.lat")
        _need(isinstance(geo["lon"], int | float) and -180 <= geo["lon"] <= 180, "geo.lon")
    ev = record["evidence"]
    if ev is not None:
        _need(isinstance(ev, dict) and ev.get("alg") == EVIDENCE_ALG, "evidence: unknown format")
        _need(isinstance(ev.get("ct"), str), "evidence.ct: expected base64 text")


_FIELDS_V1 = (
    "v", "id", "device_id", "seq", "prev_hash", "kpm_id", "programme", "period",
    "officer_id", "decision", "reason", "score", "threshold", "model", "captured_at",
    "clock", "geo", "geofence", "frames_used", "evidence",
)  # fmt: skip
_LIVENESS_KEYS = {
    "score", "threshold", "frames_judged", "frames_live", "needed", "models", "challenge",
}  # fmt: skip
_CHALLENGE_KEYS = {"kind", "steps", "passed", "reason"}


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _unit(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and 0.0 <= x <= 1.0


def check_liveness(lv: Any, decision: str) -> None:
    """The `liveness` object: null, or PAD's score/threshold/frame counts/model hashes.

    Consistency is part of the contract, so HQ can audit it: a `spoof` carries a score
    below its threshold, and a `match` that went through PAD a score at or above it.
    """
    if lv is None:
        _need(decision != "spoof", "liveness: a spoof decision must carry its liveness")
        return
    _need(isinstance(lv, dict), "liveness: expected an object or null")
    _need(set(lv) == _LIVENESS_KEYS, f"liveness: expected keys {', '.join(sorted(_LIVENESS_KEYS))}")
    _need(lv["score"] is None or _unit(lv["score"]), "liveness.score: expected 0..1 or null")
    _need(_unit(lv["threshold"]), "liveness.threshold: expected 0..1")
    for name in ("frames_judged", "frames_live", "needed"):
        _need(_count(lv[name]), f"liveness.{name}: expected a count")
    models = lv["models"]
    _need(
        isinstance(models, list)
        and 1 <= len(models) <= 4
        and all(isinstance(m, str) and _HEX64.match(m) for m in models),
        "liveness.models: expected a list of sha256",
    )
    ch = lv["challenge"]
    if ch is not None:
        _need(isinstance(ch, dict) and set(ch) == _CHALLENGE_KEYS, "liveness.challenge: keys")
        _need(ch["kind"] == "turn", "liveness.challenge.kind: expected turn")
        _need(
            isinstance(ch["steps"], list) and all(x in ("left", "right") for x in ch["steps"]),
            "liveness.challenge.steps: expected left/right",
        )
        _need(isinstance(ch["passed"], bool), "liveness.challenge.passed: expected a boolean")
        _need(ch["reason"] is None or isinstance(ch["reason"], str), "liveness.challenge.reason")
    challenge_failed = ch is not None and not ch["passed"]
    score = lv["score"]
    if decision == "spoof":
        _need(
            challenge_failed or (score is not None and score < lv["threshold"]),
            "liveness: spoof with a live score",
        )
    if decision == "match":
        _need(
            score is not None and score >= lv["threshold"],
            "liveness: match with a score below the liveness threshold",
        )
        _need(not challenge_failed, "liveness: match after a failed challenge")


def check_signature(record: Mapping[str, Any], verify_key: VerifyKey) -> None:
    sig = record.get("sig")
    _need(isinstance(sig, str), "sig: missing")
    try:
        raw = unb64(str(sig), "sig")
        verify_key.verify(signed_bytes(record), raw)
    except (BadSignatureError, ValueError):
        raise RecordInvalid("bad signature") from None
    # base64 decoding ignores a final character's unused bits: insist on the one canonical
    # spelling so that no stored byte of a record can change without failing the check
    _need(b64(raw) == sig, "bad signature (non-canonical base64)")


def parse_record(payload: bytes) -> dict[str, Any]:
    """Strict JSON parse of a record from the wire; RecordInvalid on anything odd."""
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordInvalid(f"malformed JSON: {exc}") from None
    _need(isinstance(obj, dict), "expected a JSON object")
    check_fields(obj)
    return obj


# -- signed heads ------------------------------------------------------------------
# The newest (seq, hash) of a device's chain, signed by the device key. The kiosk keeps
# one in its store (written in the transaction of each record) and publishes it in its
# retained status; HQ keeps the latest it has seen. Without the device key nobody can
# make one, so a chain cut short of a signed head is evidence of truncation.
HEAD_KIND = "bansos-edge/head"
HEAD_FIELDS = {"kind", "device_id", "seq", "hash", "at", "sig"}


def sign_head(
    key: SigningKey, device_id: str, seq: int, head_hash: str, at: float
) -> dict[str, Any]:
    """A signed head: `kind` keeps its signature from ever passing for a record's."""
    body: dict[str, Any] = {
        "kind": HEAD_KIND,
        "device_id": device_id,
        "seq": seq,
        "hash": head_hash,
        "at": utc_iso(at),
    }
    return {**body, "sig": b64(key.sign(canonical_json(body)).signature)}


def check_head(head: Any, verify_key: VerifyKey, device_id: str | None = None) -> dict[str, Any]:
    """The head if its shape and signature hold (and its device is `device_id`)."""
    _need(isinstance(head, dict) and set(head) == HEAD_FIELDS, "signed head: malformed")
    _need(head["kind"] == HEAD_KIND, "signed head: wrong kind")
    seq = head["seq"]
    _need(isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0, "signed head: seq")
    _need(isinstance(head["hash"], str) and bool(_HEX64.match(head["hash"])), "signed head: hash")
    _need(isinstance(head["device_id"], str), "signed head: device_id")
    _need(isinstance(head["at"], str) and head["at"].endswith("Z"), "signed head: at")
    _need(device_id is None or head["device_id"] == device_id, "signed head: device_id mismatch")
    sig = head["sig"]
    _need(isinstance(sig, str), "signed head: sig")
    try:
        raw = unb64(str(sig), "sig")
        verify_key.verify(canonical_json({k: v for k, v in head.items() if k != "sig"}), raw)
    except (BadSignatureError, ValueError):
        raise RecordInvalid("signed head: bad signature") from None
    _need(b64(raw) == sig, "signed head: bad signature (non-canonical base64)")
    return dict(head)


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    reason: str


def verify_chain(
    records: Iterable[Mapping[str, Any]],
    verify_key: VerifyKey,
    device_id: str | None = None,
    start_seq: int = 1,
    start_hash: str = GENESIS_HASH,
) -> tuple[int, ChainProblem | None]:
    """Check every signature and link in seq order; (count checked, first problem or None).

    `start_seq`/`start_hash` anchor the chain after acked records were purged.
    """
    expected_seq = start_seq
    prev = start_hash
    count = 0
    for record in records:
        seq = record.get("seq")
        where = seq if isinstance(seq, int) else expected_seq
        try:
            check_fields(record)
            check_signature(record, verify_key)
            _need(device_id is None or record["device_id"] == device_id, "device_id mismatch")
            if record["seq"] > expected_seq:
                # A gap: the first bad seq is the one that is missing, not the one after it.
                return count, ChainProblem(
                    expected_seq, f"record seq {expected_seq} is missing (next stored is {seq})"
                )
            _need(record["seq"] == expected_seq, f"expected seq {expected_seq}, found {seq}")
            _need(record["prev_hash"] == prev, "prev_hash does not match the previous record")
        except RecordInvalid as exc:
            return count, ChainProblem(
                int(where) if isinstance(where, int) else expected_seq, str(exc)
            )
        prev = record_hash(record)
        expected_seq += 1
        count += 1
    return count, None
