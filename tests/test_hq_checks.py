"""Pure HQ decisions: message checks, dedup, fork detection, chain summaries, suspects."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from edge_hq.checks import (
    BAD_SIGNATURE,
    MALFORMED,
    TOO_LARGE,
    UNKNOWN_DEVICE,
    WRONG_TOPIC,
    Accepted,
    Link,
    Rejected,
    check_message,
    dedup,
    link_issues,
    summarise_chain,
)
from edge_hq.ingest import ack_payloads, topic_device
from edge_hq.suspects import Face, find_suspects
from nacl.signing import SigningKey

from edge.records import GENESIS_HASH, canonical_json, record_hash
from edge.uplink.acks import parse_acks
from tests.support.hq import SimKiosk, hq_box_key, unit_vector


@pytest.fixture
def kiosk() -> SimKiosk:
    return SimKiosk(hq_box_key().public_key)


def test_good_record_is_accepted_with_its_hash(kiosk: SimKiosk) -> None:
    rec = kiosk.record()
    verdict = check_message(
        canonical_json(rec), kiosk.device_id, {kiosk.device_id: kiosk.key.verify_key}.get
    )
    assert isinstance(verdict, Accepted)
    assert verdict.hash == record_hash(rec)
    assert verdict.record["seq"] == 1


def test_each_bad_message_gets_its_reason(kiosk: SimKiosk) -> None:
    keys = {kiosk.device_id: kiosk.key.verify_key}.get
    rec = kiosk.record()
    tampered = dict(rec, kpm_id="KPM-OTHER")
    cases = {
        BAD_SIGNATURE: (canonical_json(tampered), kiosk.device_id),
        MALFORMED: (b"{not json", kiosk.device_id),
        WRONG_TOPIC: (canonical_json(rec), "kiosk-0000000000000000"),
    }
    for reason, (payload, device) in cases.items():
        verdict = check_message(payload, device, keys)
        assert isinstance(verdict, Rejected) and verdict.reason == reason, reason
    assert check_message(json.dumps([1]).encode(), kiosk.device_id, keys) == Rejected(
        MALFORMED, "expected a JSON object"
    )
    other = SimKiosk(hq_box_key().public_key)
    unknown = check_message(canonical_json(other.record()), other.device_id, keys)
    assert isinstance(unknown, Rejected) and unknown.reason == UNKNOWN_DEVICE
    big = check_message(b" " * 2000, kiosk.device_id, keys, max_bytes=1024)
    assert isinstance(big, Rejected) and big.reason == TOO_LARGE
    # the same signature spelled with other (ignored) trailing base64 bits is refused
    sig = rec["sig"]
    assert sig.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = sig[-3]
    twin = sig[:-3] + alphabet[alphabet.index(last) ^ 1] + "=="
    v = check_message(canonical_json(dict(rec, sig=twin)), kiosk.device_id, keys)
    assert isinstance(v, Rejected) and v.reason == BAD_SIGNATURE and "canonical" in v.detail
    # a signature made by another kiosk's key for this device id is refused too
    forged = other.record()
    forged_for = dict(forged, device_id=kiosk.device_id)
    v = check_message(canonical_json(forged_for), kiosk.device_id, keys)
    assert isinstance(v, Rejected) and v.reason == BAD_SIGNATURE


def test_dedup() -> None:
    assert dedup(None, "a") == "new"
    assert dedup("a", "a") == "duplicate"
    assert dedup("a", "b") == "conflict"


def _chain(n: int) -> list[Link]:
    links, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        h = f"{i:064x}"
        links.append(Link(i, f"id{i}", prev, h))
        prev = h
    return links


def test_summary_of_a_clean_chain() -> None:
    s = summarise_chain(_chain(50))
    assert (s.records, s.last_seq, s.gaps, s.forks, s.missing) == (50, 50, [], [], 0)


def test_summary_finds_gaps_and_forks() -> None:
    links = _chain(20)
    del links[4]  # seq 5 missing
    del links[9:12]  # seqs 11..13 missing
    forked = Link(15, "id15b", links[-7].hash, "f" * 64)  # a second record at seq 15
    relinked = Link(18, "id18", "e" * 64, f"{18:064x}")  # seq 18 names no stored seq 17
    links = [x if x.seq != 18 else relinked for x in links] + [forked]
    links.sort(key=lambda x: (x.seq, x.id))
    s = summarise_chain(links)
    assert s.gaps == [(5, 5), (11, 13)]
    assert s.missing == 4
    assert s.forks == [15, 18]
    assert s.last_seq == 20
    assert s.records == 20 - 4 + 1


def test_first_record_must_start_at_genesis() -> None:
    s = summarise_chain([Link(1, "a", "1" * 64, "2" * 64)])
    assert s.forks == [1]
    assert link_issues(Link(1, "a", "1" * 64, "2" * 64), [], [], [])[0].kind == "fork"


def test_link_issues_sees_neighbours() -> None:
    a, b, c = _chain(3)
    assert link_issues(b, [a], [b], [c]) == []
    other = Link(2, "x", a.hash, "9" * 64)
    kinds = link_issues(other, [a], [b], [c])
    assert [i.seq for i in kinds] == [2, 3]  # two records at seq 2, and seq 3 links to the other
    orphan = Link(2, "y", "8" * 64, "7" * 64)
    assert link_issues(orphan, [a], [], [])[0].detail.startswith("prev_hash")


def test_topic_and_ack_helpers() -> None:
    assert topic_device("kiosk/kiosk-00ff/records", "kiosk") == "kiosk-00ff"
    assert topic_device("kiosk/a/b/records", "kiosk") is None
    assert topic_device("kiosk//records", "kiosk") is None
    ids = [str(uuid.UUID(int=i)) for i in range(250)]
    key = SigningKey.generate()
    payloads = ack_payloads("kiosk-00ff", ids, key)
    chunks = [parse_acks(p, "kiosk-00ff", key.verify_key) for p in payloads]
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert [i for c in chunks for i in c] == ids


def test_suspects_group_one_face_across_kpms() -> None:
    rng = np.random.default_rng(7)
    faces = [Face(f"r{i}", f"K{i}", "kiosk-a", unit_vector(rng)) for i in range(300)]
    same = unit_vector(rng)
    noisy = same + 0.05 * unit_vector(rng)
    faces += [
        Face("dup-1", "KX", "kiosk-a", same),
        Face("dup-2", "KY", "kiosk-b", noisy),
        Face("dup-3", "KX", "kiosk-a", same),  # the same KPM again is not suspicious by itself
    ]
    found = find_suspects(faces, threshold=0.362)
    assert len(found) == 1
    s = found[0]
    assert s.kpm_ids == ("KX", "KY")
    assert set(s.record_ids) == {"dup-1", "dup-2", "dup-3"}
    assert s.device_ids == ("kiosk-a", "kiosk-b")
    assert 0.9 < s.max_score <= 1.0


def test_no_suspects_among_strangers_or_same_kpm() -> None:
    rng = np.random.default_rng(3)
    v = unit_vector(rng)
    assert find_suspects([Face("a", "K1", "d", v), Face("b", "K1", "d", v)]) == []
    assert find_suspects([Face(f"r{i}", f"K{i}", "d", unit_vector(rng)) for i in range(500)]) == []
