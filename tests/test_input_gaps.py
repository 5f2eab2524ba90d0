"""Input that used to slip through (issue 19): a trailing newline passing an id check
(`$` matches before a final "\\n"), control characters in a manual reason, the officer
sign-in telling known ids from unknown ones by its timing."""

from __future__ import annotations

import dataclasses
import statistics
import time

import pytest
from edge_hq.review import check_reviewer
from nacl.signing import SigningKey

from edge.errors import BadInput
from edge.keys import device_id_for
from edge.records import RecordInvalid, build_record, check_fields
from edge.roster import parse_bundle, parse_utc
from edge.ui.officers import OfficerBook, hash_pin, parse_officers, verify_pin
from edge.verification import BadRequest, parse_request
from tests.roster_fixtures import make_verification

NEWLINE_IDS = ["KPM-0001\n", "officer-7\n"]


@pytest.mark.parametrize("field", ["kpm_id", "officer_id", "period"])
def test_request_ids_with_a_trailing_newline_are_refused(field: str) -> None:
    req = {"kpm_id": "KPM-0001", "officer_id": "officer-7", "period": "2026-11"}
    parse_request(req)
    with pytest.raises(BadRequest, match=field):
        parse_request({**req, field: req[field] + "\n"})


def _record(**changes: object) -> dict[str, object]:
    key = SigningKey.generate()
    v = dataclasses.replace(make_verification(1), **changes)  # type: ignore[arg-type]
    return build_record(
        v, device_id=device_id_for(key.verify_key), seq=1, prev_hash="0" * 64, key=key
    )


@pytest.mark.parametrize("field", ["kpm_id", "officer_id", "period"])
def test_records_refuse_ids_with_a_trailing_newline(field: str) -> None:
    """HQ's record check (check_fields, used by ingest and verify_chain) refuses them too."""
    good = _record()
    bad = {**good, field: f"{good[field]}\n"}
    with pytest.raises(RecordInvalid, match=field):
        check_fields(bad)
    with pytest.raises(RecordInvalid, match=field):
        _record(**{field: f"{good[field]}\n"})


def test_record_id_hash_and_time_patterns_refuse_a_trailing_newline() -> None:
    good = _record()
    for field in ("id", "prev_hash", "model"):
        with pytest.raises(RecordInvalid):
            check_fields({**good, field: f"{good[field]}\n"})
    with pytest.raises(ValueError):
        parse_utc("2026-11-02T00:00:00Z\n")


def test_roster_and_hq_ids_refuse_a_trailing_newline() -> None:
    with pytest.raises(BadInput):
        check_reviewer("auditor-1\n")
    head = {"v": 1, "bundle_id": "b1", "issued_at": "2026-11-01T00:00:00Z", "model": "a" * 64}
    with pytest.raises(BadInput, match="device_id"):
        parse_bundle({**head, "device_id": "kiosk-1\n"}, "t")
    with pytest.raises(BadInput, match="bundle_id"):
        parse_bundle({**head, "bundle_id": "b1\n", "device_id": "kiosk-1"}, "t")
    with pytest.raises(BadInput, match="model"):
        parse_bundle({**head, "model": "a" * 64 + "\n", "device_id": "kiosk-1"}, "t")


def test_officer_ids_and_pins_refuse_a_trailing_newline() -> None:
    pin_hash = hash_pin("1234", n=2)
    with pytest.raises(BadInput, match="id"):
        parse_officers({"officer": [{"id": "o1\n", "name": "A", "pin_hash": pin_hash}]}, "f")
    assert not verify_pin("1234\n", pin_hash)
    with pytest.raises(BadInput):
        hash_pin("1234\n")


@pytest.mark.parametrize("bad", ["\x00", "\n", "\r", "\x1b[2J", "\u202e", "\u2028", "\x7f"])
def test_manual_reason_refuses_control_characters(bad: str) -> None:
    req = {"kpm_id": "KPM-0001", "officer_id": "o1", "manual_reason": "card checked"}
    parse_request(req)
    with pytest.raises(BadRequest, match="manual_reason: control character"):
        parse_request({**req, "manual_reason": f"card {bad}checked"})


def test_record_reason_refuses_control_characters() -> None:
    good = _record(reason="override: card checked")
    with pytest.raises(RecordInvalid, match="reason: control character U\\+0000"):
        check_fields({**good, "reason": "card\x00checked"})
    # ordinary text, accents and other scripts stay fine
    check_fields({**good, "reason": "kartu dicek, wajah berubah (operasi) — é ü"})


# -- officer id timing -----------------------------------------------------------
def test_wrong_pin_takes_as_long_for_an_unknown_officer() -> None:
    """A wrong PIN used to take ~1 ms for an unknown id and ~65 ms for a known one."""
    officers = parse_officers(
        {"officer": [{"id": "officer-7", "name": "Sari", "pin_hash": hash_pin("4821")}]}, "f"
    )

    def timed(officer_id: str) -> float:
        book = OfficerBook(officers, lockout_after=100)
        t0 = time.perf_counter()
        assert book.sign_in_pin(officer_id, "0000", now=0.0).code == 401
        return time.perf_counter() - t0

    timed("officer-7")  # warm up
    known = statistics.median(timed("officer-7") for _ in range(5))
    unknown = statistics.median(timed(f"nobody-{i}") for i in range(5))
    assert unknown >= 0.5 * known, f"unknown {unknown * 1000:.1f} ms, known {known * 1000:.1f} ms"
    assert unknown <= 2.0 * known, f"unknown {unknown * 1000:.1f} ms, known {known * 1000:.1f} ms"


def test_malformed_pin_takes_as_long_as_a_wrong_one() -> None:
    pin_hash = hash_pin("4821")
    verify_pin("0000", pin_hash)

    def timed(pin: str) -> float:
        t0 = time.perf_counter()
        assert not verify_pin(pin, pin_hash)
        return time.perf_counter() - t0

    wrong = statistics.median(timed("0000") for _ in range(5))
    malformed = statistics.median(timed("x") for _ in range(5))
    assert malformed >= 0.5 * wrong


def test_unknown_id_still_counts_towards_lockout() -> None:
    officers = parse_officers(
        {"officer": [{"id": "officer-7", "name": "Sari", "pin_hash": hash_pin("4821", n=2)}]},
        "f",
    )
    book = OfficerBook(officers, lockout_after=2)
    assert book.sign_in_pin("ghost", "1111", 0.0).code == 401
    assert book.sign_in_pin("ghost", "1111", 0.0).code == 423
    assert book.sign_in_pin("officer-7", "4821", 0.0).code == 200
