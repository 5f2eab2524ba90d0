"""`spoof` and `liveness` in the record contract and the verification flow.

The record: schema 2 carries `liveness`; a spoof must carry a score below its threshold,
a match one at or above it; version 1 records (kiosks without PAD) still verify. The
flow: spoof is a failed attempt (manual may follow, and then says so), never a match.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from edge.infer.liveness import decide_liveness
from edge.records import (
    RecordInvalid,
    build_record,
    check_fields,
    check_signature,
    signed_bytes,
    verify_chain,
)
from edge.verification import FAILED_DECISIONS, parse_request
from tests.roster_fixtures import make_verification
from tests.test_verification import Outcome, make

PAD_SHAS = ["a1" * 32, "b2" * 32]


def liveness(score: float | None, threshold: float = 0.377) -> dict[str, Any]:
    return {
        "score": score,
        "threshold": threshold,
        "frames_judged": 3,
        "frames_live": 0,
        "needed": 2,
        "models": PAD_SHAS,
        "challenge": None,
    }


def build(decision: str, lv: dict[str, Any] | None) -> dict[str, Any]:
    v = dataclasses.replace(make_verification(1, decision=decision), liveness=lv)
    return build_record(v, device_id="dev-1", seq=1, prev_hash="0" * 64, key=SigningKey(b"k" * 32))


def test_a_spoof_record_carries_its_liveness_and_verifies():
    key = SigningKey(b"k" * 32)
    rec = build("spoof", liveness(0.004))
    assert rec["v"] == 2 and rec["decision"] == "spoof"
    assert rec["liveness"]["models"] == PAD_SHAS
    check_signature(rec, key.verify_key)
    assert verify_chain([rec], key.verify_key) == (1, None)


@pytest.mark.parametrize(
    ("decision", "lv", "message"),
    [
        ("spoof", None, "spoof decision must carry"),
        ("spoof", liveness(0.9), "spoof with a live score"),
        ("match", liveness(0.1), "below the liveness threshold"),
        ("match", {**liveness(0.9), "models": ["nothex"]}, "liveness.models"),
        ("match", {**liveness(0.9), "score": 1.5}, "liveness.score"),
        ("no_match", {**liveness(0.9), "extra": 1}, "liveness: expected keys"),
        (
            "match",
            {
                **liveness(0.9),
                "challenge": {
                    "kind": "turn",
                    "steps": ["left", "right"],
                    "passed": False,
                    "reason": "timeout",
                },
            },
            "match after a failed challenge",
        ),
        ("no_match", {**liveness(0.9), "challenge": {"kind": "blink"}}, "challenge: keys"),
    ],
)
def test_inconsistent_liveness_is_refused(decision, lv, message):
    with pytest.raises(RecordInvalid, match=message):
        build(decision, lv)


def test_version_1_records_still_verify_but_cannot_say_spoof():
    key = SigningKey(b"k" * 32)
    rec = build("match", None)
    old = {k: v for k, v in rec.items() if k not in ("liveness", "camera", "sig")}
    old["v"] = 1
    from edge.keys import b64

    old["sig"] = b64(key.sign(signed_bytes(old)).signature)
    check_fields(old)
    check_signature(old, key.verify_key)
    with pytest.raises(RecordInvalid, match="unknown fields: liveness"):
        check_fields({**old, "liveness": None})
    with pytest.raises(RecordInvalid, match="spoof needs schema v2"):
        check_fields({**old, "decision": "spoof"})
    with pytest.raises(RecordInvalid, match="unsupported schema version"):
        check_fields({**old, "v": True})


@dataclasses.dataclass
class PadOutcome(Outcome):
    live_score: float = 0.004

    def liveness_record(self) -> dict[str, Any]:
        rule = decide_liveness([self.live_score] * 3, 0.377, 2, 0.5)
        return rule.as_record(PAD_SHAS)


def test_spoof_is_recorded_counts_as_failed_and_never_serves(tmp_path: Path):
    v, decider, (store, key, _box, _places) = make(tmp_path)
    assert "spoof" in FAILED_DECISIONS
    decider.outcome = PadOutcome("spoof", score=0.92, reason="presentation attack suspected")
    answer = v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))
    assert answer["decision"] == "spoof"
    assert answer["liveness"] == {
        "score": 0.004,
        "threshold": 0.377,
        "frames_live": 0,
        "frames_judged": 3,
        "challenge": None,
    }
    assert store.served_by("KPM-1", "sembako", "2026-11") is None
    [rec] = list(store.iter_records())
    assert rec["decision"] == "spoof" and rec["liveness"]["score"] == 0.004
    assert rec["score"] == pytest.approx(0.92)  # the print matched the KPM: HQ sees that too
    # the next check can still succeed (a real person, live) ...
    decider.outcome = PadOutcome("match", live_score=0.97)
    answer = v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))
    assert answer["decision"] == "match" and answer["liveness"]["score"] == 0.97
    assert verify_chain(list(store.iter_records()), key.verify_key) == (2, None)


def test_manual_after_spoof_says_so_in_the_record(tmp_path: Path):
    v, decider, (store, *_rest) = make(tmp_path)
    decider.outcome = PadOutcome("spoof", score=0.92)
    spoof = v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))
    decider.outcome = Outcome("no_match", score=0.1)  # a later plain failure ...
    v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))
    manual = v.verify(
        parse_request(
            {"kpm_id": "KPM-1", "officer_id": "o", "manual_reason": "KTP checked in person"}
        )
    )
    assert manual["decision"] == "manual"
    assert manual["reason"] == (  # ... does not hide the spoof: the record names it
        f"override after spoof (record {spoof['record_id']}): KTP checked in person"
    )
    last = list(store.iter_records())[-1]
    assert last["reason"].startswith("override after spoof") and last["liveness"] is None


def test_manual_after_no_match_only_keeps_its_reason(tmp_path: Path):
    v, decider, _ = make(tmp_path)
    decider.outcome = Outcome("no_match", score=0.1)
    v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))
    answer = v.verify(
        parse_request({"kpm_id": "KPM-1", "officer_id": "o", "manual_reason": "scarred face"})
    )
    assert answer["reason"] == "scarred face"


def test_hq_accepts_spoof_records_and_counts_spoofs_and_overrides(tmp_path: Path):
    """Through HQ's own checks (signature, shape) and store, then the period report."""
    from edge_hq.checks import Accepted, check_message
    from edge_hq.db import open_database
    from edge_hq.registry import KeyCache, add_device
    from edge_hq.report import period_report
    from edge_hq.store import Incoming, store_batch

    from edge.keys import b64
    from edge.records import canonical_json

    v, decider, (store, key, *_rest) = make(tmp_path)
    v.camera = "replay"  # a kiosk replaying files: HQ must flag it
    decider.outcome = PadOutcome("spoof", score=0.92)
    v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))
    v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o", "manual_reason": "KTP ok"}))
    spoof, manual = list(store.iter_records())
    assert spoof["camera"] == "replay" and manual["camera"] is None  # no frame taken
    db = open_database(f"sqlite:///{tmp_path / 'hq.db'}")
    add_device(db, v.device_id, b64(bytes(key.verify_key)))
    batch = []
    for rec in store.iter_records():
        payload = canonical_json(rec)
        verdict = check_message(payload, v.device_id, KeyCache(db))
        assert isinstance(verdict, Accepted), verdict
        batch.append(Incoming(f"kiosk/{v.device_id}/records", v.device_id, payload, verdict))
    assert len(store_batch(db, batch).stored) == 2
    [period] = period_report(db)
    assert period["spoofs"] == 1 and period["manual_after_spoof"] == 1
    assert period["decisions"] == {"manual": 1, "spoof": 1}
    assert period["match_without_liveness"] == 0
    assert period["replay_records"] == 1 and period["replay_devices"] == [v.device_id]
    assert json.loads(json.dumps(period)) == period  # plain JSON for `edge hq report --json`


def test_a_challenge_needs_liveness_on(tmp_path):
    from edge.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"liveness\.challenge"):
        parse_config({"liveness": {"enabled": False, "challenge": "turn"},
                      "mqtt": {"enabled": False}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"liveness\.min_live_frames"):
        parse_config({"face": {"burst_frames": 1, "min_good_frames": 1},
                      "mqtt": {"enabled": False}})  # fmt: skip
    cfg = parse_config({"liveness": {"challenge": "turn"}, "mqtt": {"enabled": False}})
    assert cfg.liveness.challenge == "turn" and cfg.liveness.challenge_turn == 0.35


def test_the_record_names_a_known_camera_backend():
    v = dataclasses.replace(make_verification(1, decision="no_match"), camera="usb")
    with pytest.raises(RecordInvalid, match="camera: unknown backend"):
        build_record(v, device_id="dev-1", seq=1, prev_hash="0" * 64, key=SigningKey(b"k" * 32))
    ok = dataclasses.replace(v, camera="picamera2")
    rec = build_record(ok, device_id="dev-1", seq=1, prev_hash="0" * 64, key=SigningKey(b"k" * 32))
    assert rec["camera"] == "picamera2"
