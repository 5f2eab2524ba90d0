"""1:N search for one face verified for different KPMs in a period. Pure numpy.

The threshold must be the embedder's operating point at FMR 1e-4 (cosine similarity of
L2-normalised SFace embeddings), higher than the kiosk's 1:1 point at FMR 1e-3, because at
1:N over n faces the expected false pairs grow as n^2/2 x FMR: a suspect is a lead for a
reviewer, never a verdict.

The value is the FMR 1e-4 operating point of the shipped int8 SFace embedder measured by
`edge eval` on faces-dev (docs/accuracy.md: threshold 0.4195, FNMR 0.0166 there). It belongs
to the embedder's sha256: recalibrate both this and `face.threshold` when the model changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SUSPECT_FMR_TARGET = 1e-4
SUSPECT_THRESHOLD: float = 0.4195
SUSPECT_THRESHOLD_FMR = 1e-4  # the FMR this threshold was calibrated at (see above)
FMR_1E4_THRESHOLD = SUSPECT_THRESHOLD  # the name callers use
BLOCK = 2048


@dataclass(frozen=True)
class Face:
    record_id: str
    kpm_id: str
    device_id: str
    embedding: np.ndarray  # float32, any norm


@dataclass(frozen=True)
class Suspect:
    """A group of records whose faces match each other but name different KPMs."""

    kpm_ids: tuple[str, ...]
    record_ids: tuple[str, ...]
    device_ids: tuple[str, ...]
    max_score: float


def _normalise(faces: Sequence[Face]) -> np.ndarray:
    m = np.stack([np.asarray(f.embedding, dtype=np.float32).reshape(-1) for f in faces])
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.maximum(norms, 1e-12)


def find_suspects(faces: Sequence[Face], threshold: float = FMR_1E4_THRESHOLD) -> list[Suspect]:
    """Pairs at or above `threshold` with different kpm_id, joined into groups (union-find).

    Blockwise matrix products keep memory at BLOCK x n floats.
    """
    n = len(faces)
    if n < 2:
        return []
    m = _normalise(faces)
    kpm = np.array([f.kpm_id for f in faces])
    parent = list(range(n))
    best: dict[int, float] = {}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, BLOCK):
        block = m[start : start + BLOCK]
        sims = block @ m.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if c <= i or kpm[i] == kpm[c]:
                continue
            a, b = root(i), root(c)
            score = float(sims[r, c])
            top = max(best.get(a, -1.0), best.get(b, -1.0), score)
            if a != b:
                parent[b] = a
            best[a] = top
    groups: dict[int, list[int]] = {}
    for i in range(n):
        r = root(i)
        if r in best:
            groups.setdefault(r, []).append(i)
    out = []
    for r, members in groups.items():
        out.append(
            Suspect(
                kpm_ids=tuple(sorted({faces[i].kpm_id for i in members})),
                record_ids=tuple(sorted(faces[i].record_id for i in members)),
                device_ids=tuple(sorted({faces[i].device_id for i in members})),
                max_score=round(best[r], 6),
            )
        )
    return sorted(out, key=lambda s: (-s.max_score, s.record_ids))
