"""HQ: double collection across kiosks, suspects with their records, and earlier captures as
extra reference templates (`edge hq roster build --add-captures`).

Real parts: two kiosks with their own Ed25519 keys registered through `edge hq device add`,
records signed and chained, checked and stored by the ingest path (SQLite and a real
PostgreSQL), evidence sealed to HQ's X25519 key, the real TFLite embedder for the roster.
Runtime: about 15-30 s (PostgreSQL start once, one embedder load).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_hq.captures import Candidate, pick_captures
from edge_hq.checks import check_message
from edge_hq.cli import hq_group
from edge_hq.db import Database, open_database
from edge_hq.keys import load_hq_box, load_hq_signing
from edge_hq.registry import KeyCache
from edge_hq.store import Incoming, store_batch

from edge.cli import cli, main
from edge.config import FaceConfig
from edge.infer.pipeline import FacePipeline, enroll_template
from edge.records import canonical_json
from edge.roster import load_bundle_bytes, verify_bundle
from edge.store import Store
from tests.support.faces import OTHER, PERSON, photos
from tests.support.helpers import write_toml
from tests.support.hq import SimKiosk, unit_vector

if "hq" not in cli.commands:  # until the lead wires the group into `edge`
    cli.add_command(hq_group)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _store(db: Database, kiosk: SimKiosk, recs: list[dict[str, Any]]) -> None:
    keys = KeyCache(db)
    batch = []
    for r in recs:
        data = canonical_json(r)
        batch.append(
            Incoming("t", kiosk.device_id, data, check_message(data, kiosk.device_id, keys))
        )
    store_batch(db, batch)


def _hq(tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    toml = write_toml(
        tmp_path / "hq.toml",
        {"broker": {"tls": False}, "database": {"url": url}, "keys": {"dir": str(tmp_path / "k")}},
    )
    cfg = ["--hq-config", str(toml)]
    assert run(capsys, "hq", "keys", "init", *cfg)[0] == 0
    return cfg


def _register(capsys: pytest.CaptureFixture[str], cfg: list[str], *kiosks: SimKiosk) -> None:
    for i, k in enumerate(kiosks):
        code, _, err = run(
            capsys, "hq", "device", "add", k.device_id, k.public_key, "--label", f"van {i}", *cfg
        )
        assert code == 0, err


def test_two_kiosks_serving_one_kpm_in_one_period_are_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_url: str
) -> None:
    cfg = _hq(tmp_path, db_url, capsys)
    box = load_hq_box(tmp_path / "k")
    van_a, van_b = SimKiosk(box.public_key), SimKiosk(box.public_key)
    _register(capsys, cfg, van_a, van_b)
    rng = np.random.default_rng(11)
    face, other_face = unit_vector(rng), unit_vector(rng)
    a1 = van_a.record("KPM-7", embedding=face)  # served in van A
    a2 = van_a.record("KPM-8", embedding=other_face)  # someone else, once: not reported
    b1 = van_b.record("KPM-7", decision="no_match")  # van B: a failed try is not a handover
    b2 = van_b.record("KPM-7", embedding=face)  # ... then served again in van B
    b3 = van_b.record("KPM-7", period="2026-12", embedding=face)  # next period: fine
    a3 = van_a.record("KPM-9", embedding=face)  # the same face as KPM-7: a suspect
    a4 = van_a.record("KPM-8", decision="already_served")  # a refusal is not a handover
    a5 = van_a.record("KPM-8", decision="manual", reason="override of already_served: t-9")
    a6 = van_a.record("KPM-X", decision="not_eligible", reason="not on the list: KPM is not ...")
    a7 = van_a.record("KPM-8", decision="not_eligible", reason="roster expired: bundle b-1 ...")
    db = open_database(db_url)
    try:
        _store(db, van_a, [a1, a2, a3, a4, a5, a6, a7])
        _store(db, van_b, [b1, b2, b3])
    finally:
        db.close()

    code, out, err = run(capsys, "hq", "report", "--json", "--actor", "auditor", *cfg)
    assert code == 0, err
    rep = json.loads(out)
    doubles = {(d["kpm_id"], d["period"]): d for d in rep["double_collection"]}
    assert set(doubles) == {("KPM-7", "2026-11"), ("KPM-8", "2026-11")}
    d7 = doubles[("KPM-7", "2026-11")]
    assert d7["across_kiosks"] is True and d7["served"] == 2
    assert d7["record_ids"] == [a1["id"], b2["id"]]  # both records, oldest first
    assert [r["device_id"] for r in d7["records"]] == [van_a.device_id, van_b.device_id]
    assert d7["device_ids"] == sorted([van_a.device_id, van_b.device_id])
    d8 = doubles[("KPM-8", "2026-11")]
    assert d8["across_kiosks"] is False and [r["decision"] for r in d8["records"]] == [
        "match",
        "manual",
    ]
    assert d8["records"][1]["reason"] == "override of already_served: t-9"
    (nov,) = [p for p in rep["periods"] if p["period"] == "2026-11"]
    assert nov["not_eligible_reasons"] == {"not on the list": 1, "roster expired": 1}
    assert nov["decisions"]["already_served"] == 1 and nov["decisions"]["manual"] == 1
    # suspects: one face behind KPM-7 and KPM-9, with every record involved
    (sus,) = [s for s in rep["suspects"] if s["period"] == "2026-11"]
    assert sus["kpm_ids"] == ["KPM-7", "KPM-9"]
    assert set(sus["record_ids"]) == {a1["id"], b2["id"], a3["id"]}
    assert {(r["id"], r["kpm_id"], r["device_id"]) for r in sus["records"]} == {
        (a1["id"], "KPM-7", van_a.device_id),
        (b2["id"], "KPM-7", van_b.device_id),
        (a3["id"], "KPM-9", van_a.device_id),
    }
    # the human report names both records too, and needs no private key for this part
    code, out, _ = run(capsys, "hq", "report", "--no-suspects", *cfg)
    assert code == 0
    line = next(x for x in out.splitlines() if "KPM-7" in x)
    assert "across kiosks" in line and a1["id"] in line and b2["id"] in line


def test_pick_captures_best_score_one_per_period_same_model() -> None:
    def c(rid: str, period: str, score: float, model: str = "m", kpm: str = "K") -> Candidate:
        return Candidate(rid, kpm, "sembako", period, score, 3, model)

    cands = [
        c("r1", "2026-09", 0.50),
        c("r2", "2026-10", 0.70),
        c("r3", "2026-10", 0.90),  # best of October
        c("r4", "2026-11", 0.95, model="old"),  # made with another embedder: useless
        c("r5", "2026-08", 0.60),
        c("r6", "2026-07", 0.99),  # a period under double-collection review
    ]
    picked = pick_captures(cands, "m", 2, {("K", "sembako", "2026-07")})
    assert [x.record_id for x in picked["K"]] == ["r3", "r5"]
    assert pick_captures(cands, "m", 0) == {}


def test_roster_build_adds_earlier_captures_marked_and_audited(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = str(tmp_path / "hq.db")
    cfg = _hq(tmp_path, url, capsys)
    box = load_hq_box(tmp_path / "k")
    pipeline = FacePipeline.from_config(FaceConfig())
    model = pipeline.embedder_sha256
    person = photos(PERSON)
    live = [enroll_template(pipeline, [p]) for p in person[1:4]]
    van = SimKiosk(box.public_key)
    _register(capsys, cfg, van)
    recs = [
        van.record("KPM-A", period="2026-09", embedding=live[0], model=model, score=0.55),
        van.record("KPM-A", period="2026-10", embedding=live[1], model=model, score=0.71),
        van.record("KPM-A", period="2026-07", embedding=live[2], model=model, score=0.50),
        van.record("KPM-A", period="2026-08", embedding=live[2], score=0.99),  # other model
        van.record(  # handed over outside the KPM's place: not a reference either
            "KPM-A",
            period="2026-05",
            embedding=live[2],
            model=model,
            score=0.97,
            geofence="outside",
        ),
        # served twice in June (under double-collection review): never a reference
        van.record("KPM-A", period="2026-06", embedding=live[2], model=model, score=0.90),
        van.record("KPM-A", period="2026-06", embedding=live[2], model=model, score=0.92),
        van.record("KPM-B", period="2026-10", decision="no_match", embedding=live[0], model=model),
    ]
    db = open_database(url)
    try:
        _store(db, van, recs)
    finally:
        db.close()
    photo_dir = tmp_path / "photos"  # symlinks to the bundled photos
    photo_dir.mkdir()
    (photo_dir / "KPM-A.jpg").symlink_to(person[0])
    (photo_dir / "KPM-B.jpg").symlink_to(photos(OTHER)[0])
    csv = tmp_path / "kpm.csv"
    csv.write_text("kpm_id,programme,period\nKPM-A,sembako,2026-11\nKPM-B,sembako,2026-11\n")
    out = tmp_path / "bundle.json"
    build = ["hq", "roster", "build", "--csv", str(csv), "--photos", str(photo_dir)]
    code, stdout, err = run(
        capsys, *build, "--out", str(out), "--add-captures", "2", "--actor", "roster-bot",
        "--valid-from", "2026-11-01T00:00:00Z", "--valid-until", "2026-12-01T00:00:00Z",
        "--json", *cfg,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["captures_added"] == 2
    assert summary["capture_records"] == {"KPM-A": [recs[1]["id"], recs[0]["id"]]}
    assert (summary["valid_from"], summary["valid_until"]) == (
        "2026-11-01T00:00:00Z",
        "2026-12-01T00:00:00Z",
    )
    hq_key = load_hq_signing(tmp_path / "k").verify_key
    bundle = verify_bundle(load_bundle_bytes(out.read_bytes(), str(out)), hq_key, model)
    entries = {e.kpm_id: e for e in bundle.entries}
    a, b = entries["KPM-A"], entries["KPM-B"]
    assert a.sources() == ("registry", f"capture:{recs[1]['id']}", f"capture:{recs[0]['id']}")
    t = a.template_arrays()
    assert np.allclose(t[0], enroll_template(pipeline, [person[0]]), atol=1e-6)
    assert np.allclose(t[1], live[1], atol=1e-6) and np.allclose(t[2], live[0], atol=1e-6)
    assert (
        b.sources() == ("registry",)
        and "template_sources" not in json.loads(out.read_text())["entries"][1]
    )
    # each unsealed record was audited, and only those
    db = open_database(url)
    try:
        audited = db.rows("SELECT actor, action, record_id FROM audit ORDER BY id")
    finally:
        db.close()
    assert audited == [
        ("roster-bot", "roster-capture", recs[1]["id"]),
        ("roster-bot", "roster-capture", recs[0]["id"]),
    ]
    # the kiosk keeps the sources and every template
    store = Store(tmp_path / "edge.db")
    try:
        store.import_bundle(bundle)
        (entry,) = store.roster_entries("KPM-A")
        assert entry.sources() == a.sources() and len(entry.templates) == 3
        assert entry.window_state(bundle.valid_from or 0) == "valid"
    finally:
        store.close()
    # bad window options: exit 2, named
    code, _, err = run(
        capsys, *build, "--out", str(tmp_path / "x.json"), "--valid-from", "2026-13-01", *cfg
    )
    assert code == 2 and "--valid-from: expected UTC time" in err


def test_two_real_kiosks_one_kpm_one_period_end_to_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Two kiosk stacks (own store, own key, real TFLite) each serve KPM-7 from the same
    signed roster: each kiosk alone sees nothing wrong; HQ's report names both records."""
    from edge_hq.roster_build import KpmRow, build_bundle

    from edge.infer.images import load_image
    from edge.keys import b64
    from edge.roster import parse_utc
    from edge.verification import parse_request
    from tests.test_eligibility_kiosk import CountingCamera, Kiosk

    cfg = _hq(tmp_path, str(tmp_path / "hq.db"), capsys)
    box = load_hq_box(tmp_path / "k")
    hq_signing = load_hq_signing(tmp_path / "k")
    pipeline = FacePipeline.from_config(FaceConfig())
    person = photos(PERSON)
    window = (parse_utc("2026-11-01T00:00:00Z"), parse_utc("2026-12-01T00:00:00Z"))
    bundle = build_bundle(
        [KpmRow("KPM-7", "sembako", "2026-11", None, 2)],
        {"KPM-7": enroll_template(pipeline, [person[0]])},
        pipeline.embedder_sha256,
        hq_signing,
        window=window,
    )
    parsed = verify_bundle(
        load_bundle_bytes(canonical_json(bundle), "mqtt"),
        hq_signing.verify_key,
        pipeline.embedder_sha256,
    )
    answers = []
    kiosks = []
    for i in (1, 2):
        k = Kiosk(tmp_path / f"kiosk{i}.db", pipeline, CountingCamera(load_image(person[i])))
        k.hq_box = box  # evidence sealed to this HQ
        k.now = parse_utc(f"2026-11-1{i}T09:00:00Z")
        verifier = k.open()
        assert k.store is not None
        k.store.import_bundle(parsed)
        answers.append(verifier.verify(parse_request({"kpm_id": "KPM-7", "officer_id": "O"})))
        kiosks.append(k)
    assert [a["decision"] for a in answers] == ["match", "match"]
    for k in kiosks:
        dev = device_id_for_key(k)
        code, _, err = run(capsys, "hq", "device", "add", dev, b64(bytes(k.key.verify_key)), *cfg)
        assert code == 0, err
    db = open_database(str(tmp_path / "hq.db"))
    try:
        keys = KeyCache(db)
        for k in kiosks:
            dev = device_id_for_key(k)
            batch = []
            for rec in k.records():
                data = canonical_json(rec)
                batch.append(Incoming("t", dev, data, check_message(data, dev, keys)))
            store_batch(db, batch)
            assert k.store is not None
            k.store.close()
    finally:
        db.close()
    code, out, err = run(capsys, "hq", "report", "--json", "--actor", "auditor", *cfg)
    assert code == 0, err
    rep = json.loads(out)
    (double,) = rep["double_collection"]
    assert double["kpm_id"] == "KPM-7" and double["across_kiosks"] is True
    assert double["record_ids"] == [a["record_id"] for a in answers]
    assert {r["device_id"] for r in double["records"]} == {device_id_for_key(k) for k in kiosks}
    # the same face, the same KPM: a double collection, not a suspect (different KPMs)
    assert rep["suspects"] == []


def device_id_for_key(k: Any) -> str:
    from edge.keys import device_id_for

    return device_id_for(k.key.verify_key)
