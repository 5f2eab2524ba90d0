"""Roster building: CSV parsing, bundle assembly the kiosk accepts, retained publish via mosquitto."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_hq.config import BrokerConfig, HqSettings
from edge_hq.publish import publish_retained, roster_topic
from edge_hq.roster_build import build_bundle, compute_templates, parse_kpm_csv, photos_for
from nacl.signing import SigningKey

from edge.errors import BadInput
from edge.records import canonical_json
from edge.roster import RosterRefused, load_bundle_bytes, verify_bundle
from tests.support.faces import FACES, OTHER, PERSON
from tests.support.helpers import wait_for
from tests.support.hq import MODEL, unit_vector
from tests.support.mqtt import HQ_IDENTITY, Broker, Pki, connect_client

CSV = """kpm_id,programme,period,place,lat,lon,radius_m
K1,sembako,2026-11,,-7.1,110.4,300
K1,pkh,2026-11,,,,
K2,pkh,2026-11,"{""type"":""polygon"",""points"":[[-7.1,110.4],[-7.2,110.4],[-7.2,110.5]]}",,,
"""


def test_parse_kpm_csv_places() -> None:
    rows = parse_kpm_csv(CSV, "kpm.csv")
    assert [(r.kpm_id, r.programme, r.line) for r in rows] == [
        ("K1", "sembako", 2),
        ("K1", "pkh", 3),
        ("K2", "pkh", 4),
    ]
    assert rows[0].place == {"type": "point", "lat": -7.1, "lon": 110.4, "radius_m": 300.0}
    assert rows[1].place is None
    assert rows[2].place is not None and rows[2].place["type"] == "polygon"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kpm_id,period\nK1,2026-11\n", "line 1: header: missing programme"),
        ("kpm_id,programme,period\nK 1,pkh,2026-11\n", "line 2: kpm_id: expected an id"),
        (
            "kpm_id,programme,period,lat,lon,radius_m\nK1,pkh,2026-11,-7,,\n",
            "line 2: lat/lon/radius_m: give all three",
        ),
        (
            "kpm_id,programme,period,lat,lon,radius_m\nK1,pkh,2026-11,-97,1,5\n",
            "line 2: lat: expected -90..90",
        ),
        ("kpm_id,programme,period,place\nK1,pkh,2026-11,{nope\n", "line 2: place: not valid JSON"),
        (
            "kpm_id,programme,period\nK1,pkh,2026-11\nK1,pkh,2026-11\n",
            "line 3: kpm_id: duplicate K1/pkh/2026-11",
        ),
        ("kpm_id,programme,period\nK1,pkh,December\n", "line 2: period: expected a period YYYY-MM"),
        ("kpm_id,programme,period\nK1,pkh,p,extra\n", "line 2: more cells than header"),
        ("kpm_id,programme,period\n", "no KPM rows"),
    ],
)
def test_parse_kpm_csv_refuses_with_line_and_column(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_kpm_csv(text, "kpm.csv")


def test_bundle_is_accepted_by_the_kiosk_and_bound_to_key_model_device(tmp_path: Path) -> None:
    rows = parse_kpm_csv(CSV, "kpm.csv")
    photos = tmp_path / "photos"
    (photos / "K1").mkdir(parents=True)
    (photos / "K1" / "a.jpg").write_bytes(b"1")
    (photos / "K1" / "b.png").write_bytes(b"2")
    (photos / "K1" / "notes.txt").write_text("x")
    (photos / "K2.jpg").write_bytes(b"3")
    assert [p.name for p in photos_for(photos, "K1")] == ["a.jpg", "b.png"]
    with pytest.raises(BadInput, match="no photo for KPM K3"):
        photos_for(photos, "K3")
    rng = np.random.default_rng(0)
    calls: list[list[str]] = []

    def enroll(paths: list[Path]) -> np.ndarray:
        calls.append([p.name for p in paths])
        return unit_vector(rng)

    templates = compute_templates(rows, photos, enroll)
    assert calls == [["a.jpg", "b.png"], ["K2.jpg"]]  # one template per KPM, shared across rows
    key = SigningKey.generate()
    bundle = build_bundle(rows, templates, MODEL, key, device_id="kiosk-00112233aabbccdd")
    wire = load_bundle_bytes(canonical_json(bundle), "wire")
    parsed = verify_bundle(wire, key.verify_key, MODEL, "kiosk-00112233aabbccdd")
    assert [(e.kpm_id, e.programme) for e in parsed.entries] == [
        ("K1", "sembako"),
        ("K1", "pkh"),
        ("K2", "pkh"),
    ]
    assert np.allclose(parsed.entries[0].template_arrays()[0], templates["K1"])
    with pytest.raises(RosterRefused):
        verify_bundle(wire, SigningKey.generate().verify_key, MODEL)
    with pytest.raises(RosterRefused):
        verify_bundle(wire, key.verify_key, "cd" * 32)
    with pytest.raises(RosterRefused):
        verify_bundle(wire, key.verify_key, MODEL, "kiosk-ffffffffffffffff")


def test_publish_retained_reaches_the_kiosk(pki: Pki, tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", pki)  # the ACL knows hq.roster as a roster publisher
    device = "kiosk-00112233aabbccdd"
    ingest_tls, roster_tls = pki.client(HQ_IDENTITY), pki.client("hq.roster")
    settings = HqSettings(
        broker=BrokerConfig(
            host=broker.host, port=broker.port, ca_file=str(pki.ca_file),
            cert_file=str(ingest_tls.cert_file), key_file=str(ingest_tls.key_file),
            roster_cert_file=str(roster_tls.cert_file), roster_key_file=str(roster_tls.key_file),
        )
    )  # fmt: skip
    key = SigningKey.generate()
    rows = parse_kpm_csv("kpm_id,programme,period\nK1,pkh,2026-11\n")
    bundle = build_bundle(
        rows, {"K1": unit_vector(np.random.default_rng(1))}, MODEL, key, device_id=device
    )
    got: list[bytes] = []
    kiosk: Any = None
    try:
        broker.start()
        publish_retained(settings, roster_topic(settings, device), canonical_json(bundle))
        kiosk = connect_client(
            broker, pki.client(device)
        )  # connects after: only a retained copy helps
        done = threading.Event()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            got.append(bytes(msg.payload))
            done.set()

        kiosk.on_message = on_message
        kiosk.subscribe(f"kiosk/{device}/roster", qos=1)
        wait_for(done.is_set, 30, "the retained roster")
    finally:
        if kiosk is not None:
            kiosk.disconnect()
            kiosk.loop_stop()
        broker.kill9()
    received = verify_bundle(load_bundle_bytes(got[0], "mqtt"), key.verify_key, MODEL, device)
    assert received.bundle_id == bundle["bundle_id"]


def test_roster_build_command_with_the_real_embedder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """CSV + civil-registry style photos -> a bundle the kiosk verifies; templates are faces."""
    import json

    from edge_hq.cli import hq_group
    from edge_hq.keys import load_hq_signing

    from edge.cli import cli, main
    from edge.infer.manifest import load_manifest
    from tests.support.helpers import write_toml

    if "hq" not in cli.commands:
        cli.add_command(hq_group)
    toml = write_toml(
        tmp_path / "hq.toml",
        {
            "broker": {"tls": False},
            "database": {"url": str(tmp_path / "hq.db")},
            "keys": {"dir": str(tmp_path / "k")},
        },
    )
    cfg = ["--hq-config", str(toml)]
    assert main(["hq", "keys", "init", *cfg]) == 0
    photos = tmp_path / "photos"  # symlinks to the bundled photos
    (photos / "KPM-A").mkdir(parents=True)
    for src in sorted((FACES / PERSON).iterdir())[:2]:
        (photos / "KPM-A" / src.name).symlink_to(src)
    (photos / "KPM-B.jpg").symlink_to(sorted((FACES / PERSON).iterdir())[2])
    (photos / "KPM-C.jpg").symlink_to(sorted((FACES / OTHER).iterdir())[0])
    csv = tmp_path / "kpm.csv"
    csv.write_text(
        "kpm_id,programme,period,lat,lon,radius_m\n"
        "KPM-A,sembako,2026-11,-7.1,110.4,300\nKPM-B,pkh,2026-11,,,\nKPM-C,pkh,2026-11,,,\n"
    )
    out = tmp_path / "bundle.json"
    capsys.readouterr()
    code = main(
        [
            "hq",
            "roster",
            "build",
            "--csv",
            str(csv),
            "--photos",
            str(photos),
            "--out",
            str(out),
            "--json",
            *cfg,
        ]
    )
    stdout, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(stdout)
    model = load_manifest("").embedder.sha256
    assert summary["entries"] == 3 and summary["model"] == model
    hq_key = load_hq_signing(tmp_path / "k").verify_key
    bundle = verify_bundle(load_bundle_bytes(out.read_bytes(), str(out)), hq_key, model)
    t = {e.kpm_id: e.template_arrays()[0] for e in bundle.entries}
    assert all(abs(float(np.linalg.norm(v)) - 1.0) < 1e-3 for v in t.values())
    same, other = float(t["KPM-A"] @ t["KPM-B"]), float(t["KPM-A"] @ t["KPM-C"])
    assert same > 0.362 > other, (same, other)

    # a photo with no face: exit 2, the photo named, no bundle written
    from PIL import Image

    Image.new("RGB", (200, 200), (128, 128, 128)).save(photos / "KPM-D.jpg")
    csv.write_text("kpm_id,programme,period\nKPM-D,pkh,2026-11\n")
    out2 = tmp_path / "b2.json"
    code = main(
        [
            "hq",
            "roster",
            "build",
            "--csv",
            str(csv),
            "--photos",
            str(photos),
            "--out",
            str(out2),
            *cfg,
        ]
    )
    _, err = capsys.readouterr()
    assert code == 2 and "KPM-D.jpg" in err and not out2.exists()


def test_publish_refused_or_unreachable_is_device_missing(pki: Pki, tmp_path: Path) -> None:
    from edge.errors import DeviceMissing

    broker = Broker(tmp_path / "broker", pki)
    tls = pki.client(HQ_IDENTITY)
    settings = HqSettings(
        broker=BrokerConfig(
            host=broker.host, port=broker.port, ca_file=str(pki.ca_file),
            cert_file=str(tls.cert_file), key_file=str(tls.key_file),
        )
    )  # fmt: skip
    try:
        broker.start()
        with pytest.raises(DeviceMissing, match="refused kiosk/kiosk-00112233aabbccdd/status"):
            publish_retained(settings, "kiosk/kiosk-00112233aabbccdd/status", b"{}")
    finally:
        broker.kill9()
    with pytest.raises(DeviceMissing, match="cannot connect"):
        publish_retained(settings, roster_topic(settings, "kiosk-00112233aabbccdd"), b"{}")
    missing = HqSettings(
        broker=BrokerConfig(ca_file=str(tmp_path / "nope.crt"), cert_file="a", key_file="b")
    )
    with pytest.raises(BadInput, match=r"broker\.ca_file: no such file"):
        publish_retained(missing, "kiosk/x/roster", b"{}")
