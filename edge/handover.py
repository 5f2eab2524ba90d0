"""The store-backed rules around a handover: the attempt limit, served-once inside the
write, and the preconditions of a manual handover or an override.

Each reads the store (attempts, served ledger, earlier records) and either refuses with a
clear error or says what the record becomes; edge/verification.py calls them in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from edge import verdict
from edge.eligibility import ALREADY_SERVED, describe_earlier
from edge.errors import EXIT_NEGATIVE, EdgeError
from edge.records import FAILED_DECISIONS, Verification
from edge.roster import RosterEntry
from edge.store import Store

FACE_DECISIONS = ("match", "no_match", "spoof", "no_face", "poor_quality")


class BadRequest(ValueError):
    """The request itself is wrong (HTTP 400, exit 2)."""


class AttemptsUsed(EdgeError):
    """This officer used every face attempt for this KPM and period (HTTP 409, exit 1):
    only a manual handover (with the ID card checked) may follow."""

    exit_code = EXIT_NEGATIVE

    def __init__(self, max_attempts: int, kpm_id: str, programme: str, period: str) -> None:
        super().__init__(
            f"{max_attempts} face attempts used for {kpm_id} {programme} {period}: check the "
            "ID card and record a manual handover (manual_reason)"
        )
        self.max_attempts = max_attempts


class HandoverRules:
    """The rules one store states for every verifier (and every process) on it."""

    def __init__(self, store: Store, max_attempts: int | None) -> None:
        self.store = store
        self.max_attempts = max_attempts  # face checks per officer, KPM and period

    def check_attempts(self, officer_id: str, entry: RosterEntry) -> None:
        """Refuse a face check past ui.max_attempts (counted in the store, per officer)."""
        if self.max_attempts is None:
            return
        used = self.store.attempts_used(officer_id, entry.kpm_id, entry.programme, entry.period)
        if used >= self.max_attempts:
            raise AttemptsUsed(self.max_attempts, entry.kpm_id, entry.programme, entry.period)

    def settle(
        self, v: Verification, override: bool, officer_id: str, entry: RosterEntry | None
    ) -> tuple[Verification, Mapping[str, Any] | None]:
        """The decision as the store stands inside the write transaction, and the handover
        that changed it (None: unchanged).

        A handover (match or manual) whose KPM, programme and period another writer served
        since the eligibility check becomes `already_served` naming that handover; a face
        check past the attempt limit (another screen or process used the last one) is
        refused. The served ledger's UNIQUE index backs the first rule up.
        """
        if entry is not None and v.decision in FACE_DECISIONS:
            self.check_attempts(officer_id, entry)
        if v.decision not in ("match", "manual") or override:
            return v, None
        earlier = self.store.served_by(v.kpm_id, v.programme, v.period)
        if earlier is None:
            return v, None
        return replace(
            v,
            decision="already_served",
            reason=f"{ALREADY_SERVED}: {v.programme} {v.period} handed over "
            f"{describe_earlier(earlier)} (while this verification ran)",
            score=None,
            threshold=None,
            frames_used=0,
            evidence=None,
            liveness=None,
        ), earlier

    def override_reason(
        self, entry: RosterEntry, earlier: Mapping[str, Any], manual_reason: str
    ) -> str:
        """A manual handover over an earlier one: only after the refusal was recorded.

        The officer first gets (and the store records) `already_served`; asking again
        with a reason gives a `manual` record naming the earlier record, which HQ's
        double-collection report lists for review.
        """
        if not self.store.refused_since(
            entry.kpm_id, entry.programme, entry.period, int(earlier["seq"])
        ):
            raise BadRequest(
                "manual_reason: overriding already_served needs the refusal recorded first "
                "(verify once without manual_reason)"
            )
        return verdict.override_text(earlier, manual_reason)

    def last_failure(
        self,
        kpm_id: str,
        programme: str,
        period: str,
        decisions: Sequence[str] = FAILED_DECISIONS,
    ) -> str | None:
        """The id of the latest record with one of `decisions` for this KPM and period."""
        return self.store.last_decision(kpm_id, programme, period, tuple(decisions))
