"""Eligibility on the kiosk, over the real parts: a signed roster bundle built by HQ's builder
and imported after verification, the SQLite store, Ed25519 device keys, the real TFLite face
pipeline. Only the camera is a stand-in (it counts bursts, so "no capture" is checked).

Runtime: about 10-20 s on a 2-core machine (one pipeline load, a few bursts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_hq.roster_build import KpmRow, build_bundle
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.config import FaceConfig
from edge.eligibility import (
    NOT_LISTED,
    OTHER_PERIOD,
    OTHER_PROGRAMME,
    PROGRAMME_UNSAID,
    ROSTER_EXPIRED,
    ROSTER_NOT_YET_VALID,
)
from edge.infer.images import load_image
from edge.infer.pipeline import FacePipeline, enroll_template
from edge.keys import device_id_for
from edge.records import canonical_json, check_signature, verify_chain
from edge.roster import load_bundle_bytes, parse_utc, verify_bundle
from edge.store import Store
from edge.verification import BadRequest, Verifier, parse_request
from tests.support.faces import OTHER, PERSON, photos

NOV = (parse_utc("2026-11-01T00:00:00Z"), parse_utc("2026-12-01T00:00:00Z"))
OCT = (parse_utc("2026-10-01T00:00:00Z"), parse_utc("2026-11-01T00:00:00Z"))
MID_NOV = parse_utc("2026-11-15T08:00:00Z")
GEO = {"lat": -7.1, "lon": 110.4, "eph_m": 5.0, "mode": 3, "fix_age_s": 0.5}


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline.from_config(FaceConfig())


@dataclass
class CountingCamera:
    """The one stand-in: hands out a photo as a burst and counts every capture."""

    frame: np.ndarray
    bursts: int = 0

    def burst(self, n: int) -> list[np.ndarray]:
        self.bursts += 1
        return [self.frame] * n


@dataclass
class Kiosk:
    db: Path
    pipeline: FacePipeline
    camera: CountingCamera
    key: SigningKey = field(default_factory=SigningKey.generate)
    hq_box: PrivateKey = field(default_factory=PrivateKey.generate)
    now: float = MID_NOV
    store: Store | None = None

    def open(self) -> Verifier:
        """A fresh store connection and verifier: what a daemon (re)start builds."""
        if self.store is not None:
            self.store.close()
        self.store = Store(self.db)
        return Verifier(
            store=self.store,
            decider=self.pipeline,
            burst=self.camera.burst,
            burst_frames=3,
            where=lambda place: (dict(GEO), "inside" if place else "unknown"),
            when=lambda: (self.now, "gps"),
            key=self.key,
            device_id=device_id_for(self.key.verify_key),
            hq_box_key=self.hq_box.public_key,
            limits=None,
        )

    def records(self) -> list[dict[str, Any]]:
        assert self.store is not None
        return list(self.store.iter_records())


def _import(store: Store, hq: SigningKey, model: str, bundle: dict[str, Any]) -> None:
    wire = load_bundle_bytes(canonical_json(bundle), "mqtt")
    store.import_bundle(verify_bundle(wire, hq.verify_key, model))


@pytest.fixture
def kiosk(tmp_path: Path, pipeline: FacePipeline) -> Any:
    """Roster: KPM-A sembako (registry template = someone else's photo, plus an earlier
    capture of the right face), KPM-P pkh, both 2026-11; KPM-O sembako 2026-10 (October's
    bundle, expired)."""
    hq = SigningKey.generate()
    model = pipeline.embedder_sha256
    person, other = photos(PERSON), photos(OTHER)
    registry = enroll_template(pipeline, [other[0]])  # a poor registry reference
    capture = enroll_template(pipeline, [person[0]])  # last period's live face
    templates = {"KPM-A": registry, "KPM-P": enroll_template(pipeline, [other[1]])}
    place = {"type": "point", "lat": -7.1, "lon": 110.4, "radius_m": 300}
    rows = [
        KpmRow("KPM-A", "sembako", "2026-11", place, 2),
        KpmRow("KPM-P", "pkh", "2026-11", None, 3),
    ]
    nov = build_bundle(
        rows, templates, model, hq, now=NOV[0], bundle_id="b-nov", window=NOV,
        captures={"KPM-A": [("0193aaaa-capture", capture)]},
    )  # fmt: skip
    october = build_bundle(
        [KpmRow("KPM-O", "sembako", "2026-10", None, 2)],
        {"KPM-O": registry}, model, hq, now=OCT[0], bundle_id="b-oct", window=OCT,
    )  # fmt: skip
    k = Kiosk(tmp_path / "edge.db", pipeline, CountingCamera(load_image(person[1])))
    k.open()
    assert k.store is not None
    _import(k.store, hq, model, october)
    _import(k.store, hq, model, nov)
    yield k, registry, capture
    if k.store is not None:
        k.store.close()


def _signed_refusal(k: Kiosk, answer: dict[str, Any], code: str) -> dict[str, Any]:
    rec = k.records()[-1]
    assert answer["decision"] == rec["decision"] == "not_eligible", answer
    assert answer["reason_code"] == code and rec["reason"].startswith(code + ": ")
    check_signature(rec, k.key.verify_key)
    assert rec["evidence"] is None and rec["score"] is None and rec["frames_used"] == 0
    return rec


@pytest.mark.parametrize(
    ("request_extra", "now", "code", "detail"),
    [
        ({"kpm_id": "KPM-404"}, MID_NOV, NOT_LISTED, "KPM is not on this kiosk's roster"),
        (
            {"kpm_id": "KPM-P", "programme": "sembako"},
            MID_NOV,
            OTHER_PROGRAMME,
            "KPM is listed for pkh, not sembako",
        ),
        ({"kpm_id": "KPM-O"}, MID_NOV, OTHER_PERIOD, "KPM is listed for 2026-10, not 2026-11"),
        (
            {"kpm_id": "KPM-A", "period": "2026-12"},
            MID_NOV,
            OTHER_PERIOD,
            "KPM is listed for 2026-11, not 2026-12",
        ),
        (
            {"kpm_id": "KPM-A"},
            NOV[1] + 3600,
            ROSTER_EXPIRED,
            "bundle b-nov for sembako 2026-11 was valid until 2026-12-01T00:00:00Z",
        ),
        (
            {"kpm_id": "KPM-O", "period": "2026-10"},
            MID_NOV,
            ROSTER_EXPIRED,
            "bundle b-oct for sembako 2026-10 was valid until 2026-11-01T00:00:00Z",
        ),
        (
            {"kpm_id": "KPM-A", "period": "2026-11"},
            OCT[0] + 86400,
            ROSTER_NOT_YET_VALID,
            "bundle b-nov for sembako 2026-11 is valid from 2026-11-01T00:00:00Z",
        ),
    ],
)
def test_each_refusal_is_a_signed_record_and_no_capture(
    kiosk: Any, request_extra: dict[str, str], now: float, code: str, detail: str
) -> None:
    k, _registry, _capture = kiosk
    k.now = now
    answer = k.open().verify(parse_request({"officer_id": "OFF-1", **request_extra}))
    rec = _signed_refusal(k, answer, code)
    assert detail in rec["reason"], rec["reason"]
    assert k.camera.bursts == 0
    assert verify_chain(k.records(), k.key.verify_key) == (1, None)


def test_two_programmes_need_the_programme_said(kiosk: Any, pipeline: FacePipeline) -> None:
    k, registry, _c = kiosk
    hq = SigningKey.generate()  # a second roster for the same kiosk (trust is per import here)
    both = build_bundle(
        [KpmRow("KPM-B", "sembako", "2026-11", None, 2), KpmRow("KPM-B", "pkh", "2026-11", None, 3)],
        {"KPM-B": registry}, pipeline.embedder_sha256, hq, bundle_id="b-both", window=NOV,
    )  # fmt: skip
    _import(k.store, hq, pipeline.embedder_sha256, both)
    answer = k.open().verify(parse_request({"kpm_id": "KPM-B", "officer_id": "OFF-1"}))
    _signed_refusal(k, answer, PROGRAMME_UNSAID)
    assert k.camera.bursts == 0


def test_matcher_uses_every_template_best_one_counts(kiosk: Any, pipeline: FacePipeline) -> None:
    """The probe is Adam Sandler; only the capture template is his: match on that one."""
    k, registry, capture = kiosk
    probe = pipeline.analyse(k.camera.frame).embedding
    assert probe is not None
    threshold = pipeline.threshold
    assert float(probe @ registry) < threshold < float(probe @ capture)
    answer = k.open().verify(parse_request({"kpm_id": "KPM-A", "officer_id": "OFF-1"}))
    assert answer["decision"] == "match" and k.camera.bursts == 1
    assert answer["score"] == pytest.approx(float(probe @ capture), abs=2e-3)
    entry = k.store.roster_entries("KPM-A")[0]
    assert entry.sources() == ("registry", "capture:0193aaaa-capture")


def test_already_served_survives_restart_and_purge_and_only_manual_overrides(
    kiosk: Any,
) -> None:
    k, _r, _c = kiosk
    first = k.open().verify(parse_request({"kpm_id": "KPM-A", "officer_id": "OFF-1"}))
    assert first["decision"] == "match" and k.camera.bursts == 1
    device = device_id_for(k.key.verify_key)

    k.now += 3600
    again = k.open().verify(parse_request({"kpm_id": "KPM-A", "officer_id": "OFF-2"}))
    assert again["decision"] == "already_served" and k.camera.bursts == 1
    assert again["earlier"]["record_id"] == first["record_id"]
    assert again["reason"] == (
        f"already served: sembako 2026-11 handed over at {first['captured_at']} on {device} "
        f"at -7.10000,110.40000 (inside geofence), record {first['record_id']}"
    )
    check_signature(k.records()[-1], k.key.verify_key)

    # HQ acked everything long ago and retention purged the records: the ledger remains
    assert k.store is not None
    k.store.conn.execute("UPDATE outbox SET state = 'acked', acked_at = 1")
    assert k.store.purge_acked(acked_before=2) == 2 and k.store.record_count() == 0
    k.now += 3600
    after = k.open().verify(parse_request({"kpm_id": "KPM-A", "officer_id": "OFF-3"}))
    assert after["decision"] == "already_served" and k.camera.bursts == 1
    assert after["earlier"]["record_id"] == first["record_id"]

    # the override: only with a reason, only after the refusal was recorded; no capture
    override = {"kpm_id": "KPM-A", "officer_id": "OFF-3", "manual_reason": "HQ ticket 42"}
    manual = k.open().verify(parse_request(override))
    assert manual["decision"] == "manual" and k.camera.bursts == 1
    assert manual["reason"] == (
        f"override of already_served (record {first['record_id']}): HQ ticket 42"
    )
    # the override is itself a handover: the next ask names it
    nxt = k.open().verify(parse_request({"kpm_id": "KPM-A", "officer_id": "OFF-4"}))
    assert nxt["decision"] == "already_served"
    assert nxt["earlier"]["record_id"] == manual["record_id"]
    anchor_seq, anchor_hash = k.store.chain_anchor()
    assert verify_chain(k.records(), k.key.verify_key, None, anchor_seq + 1, anchor_hash) == (
        3,
        None,
    )


def test_override_needs_the_refusal_first_and_not_eligible_cannot_be_overridden(
    kiosk: Any,
) -> None:
    k, _r, _c = kiosk
    v = k.open()
    assert v.verify(parse_request({"kpm_id": "KPM-A", "officer_id": "O"}))["decision"] == "match"
    assert k.store is not None and k.store.served("KPM-A", "sembako", "2026-11")
    n = k.store.record_count()
    with pytest.raises(BadRequest, match="needs the refusal recorded first"):
        v.verify(parse_request({"kpm_id": "KPM-A", "officer_id": "O", "manual_reason": "ticket 7"}))
    assert k.store.record_count() == n  # nothing stored for a refused request
    refused = v.verify(
        parse_request({"kpm_id": "KPM-404", "officer_id": "O", "manual_reason": "ticket 7"})
    )
    assert refused["decision"] == "not_eligible" and k.store.record_count() == n + 1
    assert k.camera.bursts == 1


def test_already_served_across_real_process_restarts(
    tmp_path: Path, write_config: Any, hq_keys: Any, pipeline: FacePipeline
) -> None:
    """`edge verify --image` is a whole kiosk stack built from the config in a new process
    each time: the second handover is refused from what the store holds, nothing else."""
    import json
    import time

    from tests.conftest import run_edge

    cfg = str(write_config(face={"burst_frames": 2}))
    assert run_edge("keys", "init", "--config", cfg).returncode == 0
    person = photos(PERSON)
    bundle = build_bundle(
        [KpmRow("KPM-A", "sembako", "2026-11", None, 2)],
        {"KPM-A": enroll_template(pipeline, [person[0]])},
        pipeline.embedder_sha256, hq_keys.signing, now=time.time(),
    )  # fmt: skip
    roster = tmp_path / "roster.json"
    roster.write_bytes(canonical_json(bundle))
    res = run_edge("roster", "import", str(roster), "--config", cfg)
    assert res.returncode == 0, res.stderr
    verify = ["verify", "--kpm", "KPM-A", "--image", str(person[1]), "--json", "--config", cfg]
    first = run_edge(*verify)
    assert first.returncode == 0, first.stderr
    match = json.loads(first.stdout)
    assert match["decision"] == "match"
    second = run_edge(*verify)
    assert second.returncode == 1, second.stderr
    refusal = json.loads(second.stdout)
    assert refusal["decision"] == "already_served" and refusal["frames_total"] == 0
    assert refusal["earlier"]["record_id"] == match["record_id"]
    assert f"record {match['record_id']}" in refusal["reason"]
    assert match["captured_at"] in refusal["reason"]
    nobody = run_edge(*[a if a != "KPM-A" else "KPM-404" for a in verify])
    assert nobody.returncode == 1 and json.loads(nobody.stdout)["reason_code"] == NOT_LISTED
    res = run_edge("records", "verify", "--config", cfg)
    assert res.returncode == 0, res.stdout + res.stderr
