"""Explicit review of one record's sealed evidence: audit first, then unseal.

The audit row (who, which record, why) is committed before anything is decrypted,
so there is no way to look without leaving a trace.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey

from edge.errors import BadInput
from edge.records import Evidence, open_evidence
from edge_hq.db import Database
from edge_hq.store import audit

log = logging.getLogger(__name__)
_REVIEWER = re.compile(r"^[A-Za-z0-9._@:-]{1,64}\Z")


class NoEvidence(BadInput):
    """The record exists but carries no sealed evidence."""


@dataclass(frozen=True)
class Reviewed:
    record: dict[str, Any]
    evidence: Evidence


def check_reviewer(reviewer: str) -> str:
    if not _REVIEWER.match(reviewer or ""):
        raise BadInput(
            f"--reviewer: expected who is looking (letters, digits, ._@:-), got {reviewer!r}"
        )
    return reviewer


def review_record(
    db: Database, box_key: PrivateKey, record_id: str, reviewer: str, reason: str = ""
) -> Reviewed:
    """Log the look, then open the evidence with HQ's X25519 key."""
    check_reviewer(reviewer)
    row = db.one("SELECT body FROM records WHERE id = ?", (record_id,))
    if row is None:
        raise BadInput(f"RECORD_ID: no stored record {record_id!r}")
    record = json.loads(str(row[0]))
    if record.get("evidence") is None:
        raise NoEvidence(f"RECORD_ID: record {record_id} carries no evidence")
    audit(db, reviewer, "review", record_id, {"reason": reason[:200]})
    log.warning("evidence of record %s opened by reviewer %s", record_id, reviewer)
    try:
        evidence = open_evidence(record["evidence"], box_key)
    except (CryptoError, ValueError, KeyError) as exc:
        raise BadInput(
            f"RECORD_ID: {record_id}: evidence does not open with this HQ key ({type(exc).__name__})"
        ) from None
    return Reviewed(record, evidence)
