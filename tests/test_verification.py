"""The verification flow over a real store and real keys, with the face decision injected.

The face pipeline itself is tested in test_infer_*; here the decider is a small
object returning a fixed decision, so the flow's own rules can be checked exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.keys import device_id_for
from edge.records import open_evidence, verify_chain
from edge.roster import Bundle, RosterEntry, encode_template
from edge.store import OutboxFull, OutboxLimits, Store
from edge.verification import BadRequest, Verifier, parse_request

MODEL = "ab" * 32


@dataclass
class Outcome:
    decision: str
    score: float | None = 0.8
    threshold: float = 0.36
    frames_used: int = 3
    reason: str | None = None
    crop: Any = None
    embedding: Any = None


class FixedDecider:
    embedder_sha256 = MODEL

    def __init__(self) -> None:
        self.outcome = Outcome("match")
        self.calls = 0

    def verify_burst(self, frames: Any, references: Any) -> Outcome:
        self.calls += 1
        assert len(frames) == 4 and len(references) == 1
        return self.outcome


def make(tmp_path: Path, limits: OutboxLimits | None = None) -> tuple[Verifier, FixedDecider, Any]:
    store = Store(tmp_path / "edge.db")
    template = encode_template(np.ones(128, dtype=np.float32) / np.sqrt(128))
    from edge.keys import unb64

    entry = RosterEntry(
        "KPM-1",
        "sembako",
        "2026-11",
        (unb64(template),),
        {"type": "point", "lat": -7.0, "lon": 110.0, "radius_m": 500},
    )
    store.import_bundle(Bundle("b1", "2026-11-01T00:00:00Z", MODEL, "*", (entry,), {}))
    key = SigningKey.generate()
    box = PrivateKey.generate()
    decider = FixedDecider()
    places: list[Any] = []

    def where(place: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
        places.append(place)
        return {"lat": -7.0, "lon": 110.0, "eph_m": 5.0, "mode": 3, "fix_age_s": 0.5}, "inside"

    verifier = Verifier(
        store=store,
        decider=decider,
        burst=lambda n: [np.zeros((8, 8, 3), np.uint8)] * n,
        burst_frames=4,
        where=where,
        when=lambda: (1_795_000_000.0, "gps"),
        key=key,
        device_id=device_id_for(key.verify_key),
        hq_box_key=box.public_key,
        limits=limits,
    )
    return verifier, decider, (store, key, box, places)


def test_match_then_already_served(tmp_path: Path) -> None:
    v, decider, (store, key, box, places) = make(tmp_path)
    decider.outcome = Outcome(
        "match",
        crop=np.full((112, 112, 3), 7, np.uint8),
        embedding=np.arange(128, dtype=np.float32),
    )
    first = v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "off-1"}))
    assert first["decision"] == "match" and first["seq"] == 1 and first["geofence"] == "inside"
    assert places[0]["type"] == "point"
    second = v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "off-1"}))
    assert second["decision"] == "already_served" and decider.calls == 1
    records = list(store.iter_records())
    assert verify_chain(records, key.verify_key) == (2, None)
    ev = open_evidence(records[0]["evidence"], box)
    assert np.array_equal(np.frombuffer(ev.embedding, "<f4"), np.arange(128, dtype=np.float32))
    assert ev.crop_jpeg[:2] == b"\xff\xd8"
    assert records[1]["evidence"] is None


def test_not_eligible_is_recorded_without_capture(tmp_path: Path) -> None:
    v, decider, (store, *_rest) = make(tmp_path)
    answer = v.verify(parse_request({"kpm_id": "KPM-404", "officer_id": "o"}))
    assert answer["decision"] == "not_eligible" and decider.calls == 0
    assert store.record_count() == 1


def test_manual_needs_a_failed_check_first(tmp_path: Path) -> None:
    v, decider, _ = make(tmp_path)
    manual = {"kpm_id": "KPM-1", "officer_id": "o", "manual_reason": "worn face, KTP checked"}
    with pytest.raises(BadRequest, match="failed face check"):
        v.verify(parse_request(manual))
    decider.outcome = Outcome("no_match", score=0.1)
    assert v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))["decision"] == "no_match"
    answer = v.verify(parse_request(manual))
    assert answer["decision"] == "manual" and answer["reason"] == "worn face, KTP checked"


def test_outbox_full_refuses_and_stores_nothing(tmp_path: Path) -> None:
    v, decider, (store, *_rest) = make(tmp_path, OutboxLimits(max_rows=1, max_bytes=10**9))
    decider.outcome = Outcome("no_match", score=0.1)
    v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))
    with pytest.raises(OutboxFull, match="outbox full"):
        v.verify(parse_request({"kpm_id": "KPM-1", "officer_id": "o"}))
    assert store.record_count() == 1


@pytest.mark.parametrize(
    "request_obj, field",
    [
        ({"officer_id": "o"}, "kpm_id"),
        ({"kpm_id": "K 1", "officer_id": "o"}, "kpm_id"),
        ({"kpm_id": "K1", "officer_id": ""}, "officer_id"),
        ({"kpm_id": "K1", "officer_id": "o", "programme": "bansos"}, "programme"),
        ({"kpm_id": "K1", "officer_id": "o", "extra": 1}, "extra"),
        ({"kpm_id": "K1", "officer_id": "o", "manual_reason": "x"}, "manual_reason"),
    ],
)
def test_bad_requests_name_the_field(request_obj: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequest, match=field):
        parse_request(request_obj)
