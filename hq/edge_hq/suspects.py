"""1:N pieces in pure numpy: exact blockwise pair search, and pairs joined into groups.

`edge hq report` runs two passes per period (hq/edge_hq/search.py): exact search inside each
district or sub-district block, and a national FAISS pass (hq/edge_hq/national.py); both feed
`group_pairs`. Their thresholds come from an extreme-value fit of the impostor tail
(hq/edge_hq/calibrate.py, docs/suspects.md), far above the FMR 1e-4 point, because over n
faces the expected false pairs grow as n^2/2 x FMR. `find_suspects` (all pairs, one
threshold, default the FMR 1e-4 point 0.4195 on faces-dev) remains for district-sized runs.
A suspect is a lead for a reviewer, never a verdict.
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
BLOCK_FLOATS = 1 << 26  # at most this many scores (256 MB) in flight: rows shrink as n grows


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
    found_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pairs:
    """Index pairs i < j into one face list with their cosine scores (one search pass)."""

    i: np.ndarray  # int64
    j: np.ndarray  # int64
    score: np.ndarray  # float32

    @staticmethod
    def empty() -> Pairs:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @staticmethod
    def concat(parts: Sequence[Pairs]) -> Pairs:
        if not parts:
            return Pairs.empty()
        return Pairs(
            np.concatenate([p.i for p in parts]).astype(np.int64),
            np.concatenate([p.j for p in parts]).astype(np.int64),
            np.concatenate([p.score for p in parts]).astype(np.float32),
        )

    def keys(self) -> set[tuple[int, int]]:
        return set(zip(self.i.tolist(), self.j.tolist(), strict=True))


def normalise(m: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, C order), so inner product is cosine."""
    m = np.ascontiguousarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.ascontiguousarray(m / np.maximum(norms, 1e-12), dtype=np.float32)


def _normalise(faces: Sequence[Face]) -> np.ndarray:
    return normalise(np.stack([np.asarray(f.embedding, np.float32).reshape(-1) for f in faces]))


def exact_pairs(
    m: np.ndarray, threshold: float, rows: np.ndarray | None = None, block: int = BLOCK
) -> Pairs:
    """Every pair i < j of unit rows with cosine >= threshold, blockwise (rows x n floats,
    at most BLOCK rows and BLOCK_FLOATS scores).

    `rows` restricts the search to those row indices (a region's block), so one matrix
    serves every block; the result still holds global indices.
    """
    idx = np.arange(m.shape[0]) if rows is None else np.asarray(rows, np.int64)
    sub = m[idx] if rows is not None else m
    parts = []
    block = max(1, min(block, BLOCK_FLOATS // max(idx.size, 1)))
    for start in range(0, idx.size, block):
        sims = sub[start : start + block] @ sub.T
        r, c = np.nonzero(sims >= threshold)
        keep = c > start + r
        r, c = r[keep], c[keep]
        parts.append(Pairs(idx[start + r], idx[c], sims[r, c].astype(np.float32)))
    return Pairs.concat(parts)


def group_pairs(faces: Sequence[Face], passes: dict[str, Pairs]) -> list[Suspect]:
    """Pairs with different kpm_id, from every pass, joined into groups (union-find).

    Each group says which passes found one of its pairs (`found_by`)."""
    kpm = [f.kpm_id for f in faces]
    parent: dict[int, int] = {}
    best: dict[int, float] = {}
    tags: dict[int, set[str]] = {}

    def root(i: int) -> int:
        parent.setdefault(i, i)
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for name, p in passes.items():
        for i, j, score in zip(p.i.tolist(), p.j.tolist(), p.score.tolist(), strict=True):
            if kpm[i] == kpm[j]:
                continue
            a, b = root(i), root(j)
            if a != b:
                parent[b] = a
                best[a] = max(best.pop(b, -1.0), best.get(a, -1.0))
                tags[a] = tags.pop(b, set()) | tags.get(a, set())
            best[a] = max(best.get(a, -1.0), float(score))
            tags.setdefault(a, set()).add(name)
    groups: dict[int, list[int]] = {}
    for i in list(parent):
        groups.setdefault(root(i), []).append(i)
    out = []
    for r, members in groups.items():
        out.append(
            Suspect(
                kpm_ids=tuple(sorted({faces[i].kpm_id for i in members})),
                record_ids=tuple(sorted(faces[i].record_id for i in members)),
                device_ids=tuple(sorted({faces[i].device_id for i in members})),
                max_score=round(best[r], 6),
                found_by=tuple(sorted(tags[r])),
            )
        )
    return sorted(out, key=lambda s: (-s.max_score, s.record_ids))


def find_suspects(faces: Sequence[Face], threshold: float = FMR_1E4_THRESHOLD) -> list[Suspect]:
    """All pairs at or above `threshold` with different kpm_id, joined into groups."""
    if len(faces) < 2:
        return []
    return group_pairs(faces, {"all": exact_pairs(_normalise(faces), threshold)})
