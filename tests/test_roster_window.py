"""Bundle validity windows and template sources: strict parse, old bundles still accepted,
signature covers them, the store keeps them and derives the period being served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from bansos_contract.utc import parse as parse_utc
from edge.errors import BadInput
from edge.roster import RosterRefused, parse_bundle, verify_bundle
from edge.store import Store
from tests.roster_fixtures import MODEL_SHA, bundle_body, sign_bundle, template

WINDOW = {"valid_from": "2026-11-01T00:00:00Z", "valid_until": "2026-12-01T00:00:00Z"}


def _with(**changes: Any) -> dict[str, Any]:
    body = {**bundle_body(2), **WINDOW}
    body.update(changes)
    return body


def test_window_and_sources_round_trip() -> None:
    body = _with()
    body["entries"][0]["templates"].append(template(99))
    body["entries"][0]["template_sources"] = ["registry", "capture:0193abcd-1"]
    b = parse_bundle(body)
    assert (b.valid_from, b.valid_until) == (
        parse_utc("2026-11-01T00:00:00Z"),
        parse_utc("2026-12-01T00:00:00Z"),
    )
    e0, e1 = b.entries
    assert e0.sources() == ("registry", "capture:0193abcd-1") and len(e0.templates) == 2
    assert e1.sources() == ("registry",) and e1.template_sources == ()
    assert e0.window_state(parse_utc("2026-11-30T23:59:59Z")) == "valid"
    assert e0.window_state(parse_utc("2026-12-01T00:00:00Z")) == "expired"
    assert e0.window_state(parse_utc("2026-10-31T23:59:59Z")) == "not_yet_valid"


def test_old_bundle_without_window_or_sources_still_parses() -> None:
    b = parse_bundle(bundle_body(1))
    assert b.valid_from is None and b.entries[0].window_state(0.0) == "valid"


def _two_templates(sources: Any) -> dict[str, Any]:
    body = _with()
    body["entries"][0]["templates"].append(template(5))
    body["entries"][0]["template_sources"] = sources
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_with(valid_until=None) | {}, "valid_until: expected UTC time"),
        ({k: v for k, v in _with().items() if k != "valid_until"}, "valid_until: missing"),
        ({k: v for k, v in _with().items() if k != "valid_from"}, "valid_from: missing"),
        (_with(valid_from="2026-11-01 00:00:00"), "valid_from: expected UTC time"),
        (_with(valid_from="2026-02-30T00:00:00Z"), "valid_from: expected UTC time"),
        (_with(valid_until="2026-11-01T00:00:00Z"), "valid_until: must be later"),
        (_two_templates(["registry"]), r"entries\[0\]\.template_sources: expected a list of 2"),
        (_two_templates("registry"), r"entries\[0\]\.template_sources: expected a list of 2"),
        (_two_templates(["registry", "photo"]), r"template_sources\[1\]: expected 'registry'"),
        (_two_templates(["registry", "capture:"]), r"template_sources\[1\]"),
        (_two_templates(["registry", "capture:a b"]), r"template_sources\[1\]"),
        (_two_templates(["capture:x", "capture:x"]), r"template_sources\[1\]: .*distinct"),
        (_two_templates(["capture:x", "capture:y"]), "needs at least one 'registry'"),
    ],
)
def test_strict_refusals_name_the_key(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_bundle(body, "r.json")


def test_signature_covers_the_window() -> None:
    hq = SigningKey.generate()
    signed = sign_bundle(_with(), hq)
    assert verify_bundle(signed, hq.verify_key, MODEL_SHA).valid_until is not None
    stretched = {**signed, "valid_until": "2027-12-01T00:00:00Z"}
    with pytest.raises(RosterRefused, match="not signed by the configured HQ key"):
        verify_bundle(stretched, hq.verify_key, MODEL_SHA)


def test_store_keeps_window_sources_and_knows_the_current_period(tmp_path: Path) -> None:
    store = Store(tmp_path / "edge.db")
    try:
        october = {
            **bundle_body(1, bundle_id="b-oct"),
            "valid_from": "2026-10-01T00:00:00Z",
            "valid_until": "2026-11-01T00:00:00Z",
        }
        october["entries"][0]["period"] = "2026-10"
        store.import_bundle(parse_bundle(october))
        nov = _two_templates(["registry", "capture:r-1"])
        store.import_bundle(parse_bundle(nov))
        mid_oct, mid_nov = parse_utc("2026-10-15T00:00:00Z"), parse_utc("2026-11-15T00:00:00Z")
        assert store.current_periods(mid_oct) == {"sembako": "2026-10"}
        assert store.current_periods(mid_nov) == {"sembako": "2026-11"}
        assert store.current_periods(parse_utc("2027-01-01T00:00:00Z")) == {}
        entries = store.roster_entries("KPM-000000")
        assert [(e.period, e.bundle_id) for e in entries] == [
            ("2026-11", "b-2026-11-001"),
            ("2026-10", "b-oct"),
        ]
        assert entries[0].sources() == ("registry", "capture:r-1")
        assert entries[0].window_state(mid_nov) == "valid"
        assert entries[1].window_state(mid_nov) == "expired"
        summary = store.roster_summary()
        assert summary["valid_until"] == "2026-12-01T00:00:00Z"
    finally:
        store.close()
