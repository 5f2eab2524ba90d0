"""Pure decisions of HQ ingest: is a message a good record, is it new, does its chain hold.

No database, no MQTT: each function takes plain data so every branch is testable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from edge.keys import b64, unb64
from edge.records import GENESIS_HASH, RecordInvalid, parse_record, signed_bytes

# Quarantine reasons (stable strings: the report counts them).
UNKNOWN_DEVICE = "unknown device"
BAD_SIGNATURE = "bad signature"
MALFORMED = "malformed record"
WRONG_TOPIC = "device_id does not match topic"
ID_CONFLICT = "id already stored with different content"
TOO_LARGE = "payload too large"
STORAGE_REFUSED = "database refused the record"


@dataclass(frozen=True)
class Accepted:
    """A record whose shape and signature hold; `hash` is the next record's prev_hash."""

    record: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class Rejected:
    """Why a message goes to quarantine; `detail` is text for the admin, never biometric."""

    reason: str
    detail: str = ""


def check_message(
    payload: bytes,
    topic_device: str,
    lookup_key: Callable[[str], VerifyKey | None],
    max_bytes: int = 1 << 20,
) -> Accepted | Rejected:
    """Parse strictly, require the topic's device, a registered key and a good signature."""
    if len(payload) > max_bytes:
        return Rejected(TOO_LARGE, f"{len(payload)} bytes > {max_bytes}")
    try:
        record = parse_record(payload)
    except RecordInvalid as exc:
        return Rejected(MALFORMED, str(exc)[:300])
    if record["device_id"] != topic_device:
        return Rejected(WRONG_TOPIC, f"record says {record['device_id']}")
    key = lookup_key(topic_device)
    if key is None:
        return Rejected(UNKNOWN_DEVICE, topic_device)
    # edge.records.check_signature, with the signed bytes built once for both the
    # signature and the chain hash (a third of the check's time on a small CPU).
    data = signed_bytes(record)
    sig = record.get("sig")
    try:
        if not isinstance(sig, str):
            raise ValueError("sig: missing")
        raw = unb64(sig, "sig")
        key.verify(data, raw)
        if b64(raw) != sig:  # one canonical spelling, so no stored byte can change unnoticed
            raise ValueError("bad signature (non-canonical base64)")
    except (BadSignatureError, ValueError) as exc:
        return Rejected(
            BAD_SIGNATURE, "bad signature" if isinstance(exc, BadSignatureError) else str(exc)
        )
    return Accepted(record, hashlib.sha256(data).hexdigest())


def dedup(stored_hash: str | None, new_hash: str) -> str:
    """'new' (store it), 'duplicate' (already stored: ack again) or 'conflict' (quarantine)."""
    if stored_hash is None:
        return "new"
    return "duplicate" if stored_hash == new_hash else "conflict"


@dataclass(frozen=True)
class Link:
    """The chain facts of one stored record."""

    seq: int
    id: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainIssue:
    kind: str  # "gap" | "fork"
    seq: int
    detail: str


def link_issues(
    new: Link, prev: Iterable[Link], same_seq: Iterable[Link], nxt: Iterable[Link]
) -> list[ChainIssue]:
    """Forks visible when `new` arrives next to what is stored (seq-1, seq, seq+1).

    A fork is two different records at one seq, or a prev_hash that does not name the
    stored predecessor. Gaps are not judged here: a missing record may still arrive.
    """
    issues: list[ChainIssue] = []
    prev = list(prev)
    if new.seq == 1 and new.prev_hash != GENESIS_HASH:
        issues.append(ChainIssue("fork", 1, "seq 1 does not start from the genesis hash"))
    if prev and new.prev_hash not in {p.hash for p in prev}:
        issues.append(ChainIssue("fork", new.seq, "prev_hash does not match stored seq-1"))
    others = [s for s in same_seq if s.id != new.id]
    if others:
        issues.append(ChainIssue("fork", new.seq, f"{len(others) + 1} records share this seq"))
    for n in nxt:
        if n.prev_hash != new.hash:
            issues.append(ChainIssue("fork", new.seq + 1, "stored seq+1 does not link to this"))
    return issues


@dataclass
class ChainSummary:
    """One device's chain as stored: counts, last seq, missing ranges and fork points."""

    records: int = 0
    last_seq: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    forks: list[int] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return sum(b - a + 1 for a, b in self.gaps)


def summarise_chain(links: Iterable[Link]) -> ChainSummary:
    """Walk one device's links in (seq, id) order: gaps are missing seqs, forks broken links.

    Streams, so a device with millions of records needs memory for one seq only.
    """
    out = ChainSummary()
    expected = 1
    prev_hashes: set[str] = {GENESIS_HASH}
    cur_seq = 0
    cur_hashes: set[str] = set()
    cur_ids: set[str] = set()
    forked_here = False

    def close_seq() -> None:
        nonlocal prev_hashes
        prev_hashes = cur_hashes

    for link in links:
        out.records += 1
        if link.seq != cur_seq:
            if cur_seq:
                close_seq()
            if link.seq > expected:
                out.gaps.append((expected, link.seq - 1))
                prev_hashes = set()  # the predecessor is missing: cannot judge this link
            cur_seq, cur_hashes, cur_ids, forked_here = link.seq, set(), set(), False
            expected = link.seq + 1
        cur_ids.add(link.id)
        cur_hashes.add(link.hash)
        bad_link = bool(prev_hashes) and link.prev_hash not in prev_hashes
        if (len(cur_ids) > 1 or bad_link) and not forked_here:
            out.forks.append(link.seq)
            forked_here = True
        out.last_seq = link.seq
    return out


# -- double collection (the report) ---------------------------------------------------
@dataclass(frozen=True)
class ServedRow:
    """One stored handover (match or manual), as the report needs it."""

    id: str
    device_id: str
    seq: int
    kpm_id: str
    programme: str
    period: str
    decision: str
    captured_at: str
    geofence: str
    reason: str | None


def double_collections(rows: Iterable[ServedRow]) -> list[dict[str, Any]]:
    """KPM/programme/period served by two or more records anywhere in the fleet.

    Each group lists its records oldest first; `across_kiosks` says whether more than
    one device was involved (a same-kiosk pair can only be an officer's override).
    """
    groups: dict[tuple[str, str, str], list[ServedRow]] = {}
    for r in rows:
        groups.setdefault((r.kpm_id, r.programme, r.period), []).append(r)
    out = []
    for (kpm, programme, period), recs in sorted(groups.items()):
        if len(recs) < 2:
            continue
        recs.sort(key=lambda r: (r.captured_at, r.device_id, r.seq, r.id))
        devices = sorted({r.device_id for r in recs})
        out.append(
            {
                "kpm_id": kpm,
                "programme": programme,
                "period": period,
                "served": len(recs),
                "device_ids": devices,
                "across_kiosks": len(devices) > 1,
                "record_ids": [r.id for r in recs],
                "records": [
                    {
                        "id": r.id, "device_id": r.device_id, "seq": r.seq,
                        "decision": r.decision, "captured_at": r.captured_at,
                        "geofence": r.geofence, "reason": r.reason,
                    }
                    for r in recs
                ],
            }
        )  # fmt: skip
    return out
