"""The liveness rule over a burst (pure): enough live frames, never one lucky frame.

Every frame that passed the quality gates has a fused "real" probability. The burst's
liveness score is the k-th highest of them, k = max(min_live_frames, ceil(min_live_fraction
x judged frames)): the burst is live exactly when at least k judged frames reach the
threshold, so the score and threshold in the record are enough to audit the decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LivenessRule:
    """What the burst showed: live or not, the audited score, how many frames counted."""

    live: bool | None  # None: too few frames to judge
    score: float | None
    threshold: float
    frames_judged: int
    frames_live: int
    needed: int

    def as_record(self, models: Sequence[str]) -> dict[str, object]:
        """The record's `liveness` object (no biometric data: numbers and model hashes)."""
        return {
            "score": None if self.score is None else round(float(self.score), 6),
            "threshold": round(float(self.threshold), 6),
            "frames_judged": self.frames_judged,
            "frames_live": self.frames_live,
            "needed": self.needed,
            "models": list(models),
            "challenge": None,  # the verification flow adds the active challenge's summary
        }


def frames_needed(judged: int, min_live_frames: int, min_live_fraction: float) -> int:
    return max(int(min_live_frames), math.ceil(float(min_live_fraction) * judged - 1e-9))


def decide_liveness(
    scores: Sequence[float],
    threshold: float,
    min_live_frames: int = 2,
    min_live_fraction: float = 0.5,
) -> LivenessRule:
    """live iff at least `needed` of the judged frames score >= threshold."""
    judged = len(scores)
    needed = frames_needed(judged, min_live_frames, min_live_fraction)
    live_count = sum(1 for s in scores if s >= threshold)
    if judged < needed or judged == 0:
        return LivenessRule(None, None, threshold, judged, live_count, needed)
    kth = sorted((float(s) for s in scores), reverse=True)[needed - 1]
    return LivenessRule(kth >= threshold, kth, threshold, judged, live_count, needed)
