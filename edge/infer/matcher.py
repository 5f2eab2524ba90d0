"""Match decisions over plain arrays (pure): cosine scores, templates, the burst rule."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.errors import BadInput

EMBEDDING_DIM = 128  # SFace
EMBEDDING_DIMS = (128, 512)  # SFace, EdgeFace-XS: the embedders the manifest may name
MAX_FUSED_FRAMES = 3


def as_embedding(v: object, where: str = "embedding") -> np.ndarray:
    """A finite 128- or 512-d vector, L2-normalised (BadInput otherwise)."""
    arr = np.asarray(v, dtype=np.float32).reshape(-1)
    if arr.size not in EMBEDDING_DIMS:
        dims = " or ".join(str(d) for d in EMBEDDING_DIMS)
        raise BadInput(f"{where}: expected {dims} values, got {arr.size}")
    norm = float(np.linalg.norm(arr))
    if not np.all(np.isfinite(arr)) or norm < 1e-6:
        raise BadInput(f"{where}: zero or non-finite values")
    return arr / norm


def _same_size(a: np.ndarray, b: np.ndarray, where: str) -> None:
    if a.size != b.size:
        raise BadInput(
            f"{where}: {b.size}-d template against a {a.size}-d face: made by another embedder"
        )


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    ua, ub = as_embedding(a), as_embedding(b)
    _same_size(ua, ub, "embedding")
    return float(np.dot(ua, ub))


def best_score(probe: np.ndarray, references: Sequence[np.ndarray]) -> float:
    """Highest cosine of the probe against any of the KPM's reference templates."""
    if len(references) == 0:
        raise BadInput("references: no reference template for this KPM")
    p = as_embedding(probe, "probe")
    scores = []
    for i, r in enumerate(references):
        ref = as_embedding(r, f"references[{i}]")
        _same_size(p, ref, f"references[{i}]")
        scores.append(float(np.dot(p, ref)))
    return max(scores)


def mean_template(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of the normalised embeddings, renormalised: one template from several photos."""
    if len(embeddings) == 0:
        raise BadInput("no embeddings to build a template from")
    stacked = np.stack([as_embedding(e) for e in embeddings])
    return as_embedding(stacked.mean(axis=0), "template")


@dataclass(frozen=True)
class FrameOutcome:
    """What the burst rule needs from one analysed frame."""

    status: str  # ok | no_face | poor_quality
    reason: str | None
    rank: float
    embedding: np.ndarray | None


@dataclass(frozen=True)
class BurstRule:
    """How a burst turns into a decision: enough good frames, then the fused best ones."""

    decision: str
    reason: str | None
    score: float | None
    used: tuple[int, ...]
    embedding: np.ndarray | None


def decide_burst(
    outcomes: Sequence[FrameOutcome],
    references: Sequence[np.ndarray],
    threshold: float,
    min_good_frames: int = 1,
) -> BurstRule:
    """match/no_match on the fused embedding of the best good frames, else why not.

    Fusing (mean of the up-to-3 best-ranked frames) steadies the score against one
    odd frame; too few good frames gives poor_quality (or no_face if none had a face).
    """
    good = [i for i, o in enumerate(outcomes) if o.status == "ok" and o.embedding is not None]
    if len(good) < max(1, min_good_frames):
        poor = [o.reason or "poor quality" for o in outcomes if o.status == "poor_quality"]
        if not good and not poor:
            return BurstRule("no_face", "no face found in any frame", None, (), None)
        common = Counter(r.split(" (")[0] for r in poor).most_common(1)
        why = common[0][0] if common else "too few good frames"
        return BurstRule(
            "poor_quality",
            f"{len(good)} of {len(outcomes)} frames usable, need {min_good_frames}: {why}",
            None,
            (),
            None,
        )
    best = sorted(good, key=lambda i: -outcomes[i].rank)[:MAX_FUSED_FRAMES]
    fused = mean_template([e for i in best if (e := outcomes[i].embedding) is not None])
    score = best_score(fused, references)
    if score >= threshold:
        return BurstRule("match", None, score, tuple(best), fused)
    return BurstRule(
        "no_match", f"score {score:.3f} below threshold {threshold:.3f}", score, tuple(best), fused
    )
