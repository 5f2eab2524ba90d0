"""The national pass of the 1:N search: a FAISS index per period, range search at a threshold.

Every face is a query against the whole period; the index (IVF-Flat by default, HNSW or
exact Flat by config) is built once and written beside the database, and the queries run
in chunks whose hits are saved as they finish. A run that is killed continues from the
first unfinished chunk when started again with the same faces, threshold and index
parameters (the state file's fingerprint); anything else starts over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_hq.suspects import Pairs

log = logging.getLogger(__name__)
STATE_VERSION = 1
TRAIN_PER_LIST = 64
MIN_IVF = 20_000
RANGE_BATCH = 1000  # training points per IVF list (FAISS warns under 39)


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index and its parameters; `nlist` 0 means 4*sqrt(n)."""

    kind: str = "ivf"  # ivf | hnsw | flat
    nlist: int = 0
    nprobe: int = 16
    hnsw_m: int = 32
    ef_search: int = 128
    threads: int = 0

    def resolved(self, n: int) -> IndexSpec:
        """Concrete parameters for n faces: IVF below MIN_IVF faces is exact Flat (too few
        points to train lists on, and exact is cheap there)."""
        if self.kind == "ivf" and n < MIN_IVF:
            return IndexSpec("flat", 0, 0, self.hnsw_m, self.ef_search, self.threads)
        if self.kind != "ivf" or self.nlist:
            return self
        nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))
        return IndexSpec(self.kind, nlist, self.nprobe, self.hnsw_m, self.ef_search, self.threads)

    def describe(self) -> dict[str, Any]:
        if self.kind == "ivf":
            return {"index": "IndexIVFFlat", "nlist": self.nlist, "nprobe": self.nprobe}
        if self.kind == "hnsw":
            return {"index": "IndexHNSWFlat", "M": self.hnsw_m, "efSearch": self.ef_search}
        return {"index": "IndexFlatIP"}


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # the `hq` extra brings faiss-cpu
        raise RuntimeError("the national 1:N pass needs faiss-cpu (pip install '.[hq]')") from exc
    return faiss


def build_index(m: np.ndarray, spec: IndexSpec, seed: int = 20261207) -> Any:
    """An inner-product index over unit rows `m` (n x d float32), trained and filled."""
    faiss = _faiss()
    if spec.threads:
        faiss.omp_set_num_threads(spec.threads)
    n, d = m.shape
    if spec.kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, spec.hnsw_m * 2)
    elif spec.kind == "ivf":
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, spec.nlist, faiss.METRIC_INNER_PRODUCT)
        take = min(n, spec.nlist * TRAIN_PER_LIST)
        sample = np.random.default_rng(seed).choice(n, size=take, replace=False)
        index.train(m[np.sort(sample)])
    else:
        raise ValueError(f"unknown index kind {spec.kind!r}")
    for start in range(0, n, 200_000):
        index.add(m[start : start + 200_000])
    tune(index, spec)
    return index


def tune(index: Any, spec: IndexSpec) -> None:
    """Search-time parameters (not saved in the index file)."""
    faiss = _faiss()
    if spec.threads:
        faiss.omp_set_num_threads(spec.threads)
    if spec.kind == "ivf":
        index.nprobe = spec.nprobe
    elif spec.kind == "hnsw":
        index.hnsw.efSearch = spec.ef_search


def range_hits(
    index: Any, q: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query row in q, index label, score) for every score >= threshold.

    Batches of RANGE_BATCH queries: faiss-cpu 1.15's IndexHNSW.range_search aborts the
    process (RangeSearchResult::do_allocation assertion) on a few thousand queries at once.
    """
    radius = float(np.float32(threshold) - np.float32(1e-6))  # FAISS keeps > radius for IP
    rows, labs, scores = [], [], []
    for s in range(0, q.shape[0], RANGE_BATCH):
        lims, d, lab = index.range_search(q[s : s + RANGE_BATCH], radius)
        counts = np.diff(lims.astype(np.int64))
        rows.append(np.repeat(np.arange(s, s + counts.size, dtype=np.int64), counts))
        labs.append(lab.astype(np.int64))
        scores.append(d.astype(np.float32))
    r, lab, d = (np.concatenate(x) if x else np.zeros(0) for x in (rows, labs, scores))
    keep = d >= threshold
    return r[keep].astype(np.int64), lab[keep].astype(np.int64), d[keep].astype(np.float32)


def range_pairs(index: Any, m: np.ndarray, start: int, stop: int, threshold: float) -> Pairs:
    """Pairs (i, j), i < j, one of them in [start, stop), with index score >= threshold.

    Both directions count: an approximate index may find j from i but not i from j, so a
    pair is kept whichever end found it (`unique_pairs` drops the repeats)."""
    r, lab, d = range_hits(index, m[start:stop], threshold)
    qi = r + start
    keep = lab != qi
    qi, lab, d = qi[keep], lab[keep], d[keep]
    return unique_pairs(Pairs(np.minimum(qi, lab), np.maximum(qi, lab), d))


def unique_pairs(p: Pairs) -> Pairs:
    if p.i.size == 0:
        return p
    key = np.stack([p.i, p.j], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    return Pairs(p.i[first], p.j[first], p.score[first])


def fingerprint(ids: Sequence[str], dim: int, threshold: float, spec: IndexSpec) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([STATE_VERSION, dim, threshold, asdict(spec)]).encode())
    for rid in ids:
        h.update(rid.encode())
        h.update(b"\0")
    return h.hexdigest()


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class NationalResult:
    pairs: Pairs
    info: dict[str, Any]


def national_pass(
    ids: Sequence[str],
    m: np.ndarray,
    threshold: float,
    spec: IndexSpec,
    state_dir: Path,
    chunk: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
) -> NationalResult:
    """Range search of every row against all rows, resumable through `state_dir`.

    `progress(done, total)` is called with query counts after each chunk."""
    n, d = m.shape
    spec = spec.resolved(n)
    state_dir.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(ids, d, threshold, spec)
    state_file, index_file = state_dir / "state.json", state_dir / "index.faiss"
    chunks = (n + chunk - 1) // chunk
    state: dict[str, Any] = {}
    if state_file.exists():
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
    faiss = _faiss()
    started = time.monotonic()
    resumed = state.get("fingerprint") == fp and state.get("chunk") == chunk
    if resumed and index_file.exists():
        index = faiss.read_index(str(index_file))
        tune(index, spec)
        done = [int(c) for c in state.get("done", [])]
        log.info("national pass: resuming, %d of %d chunks already searched", len(done), chunks)
        build_s = float(state.get("build_s", 0.0))
    else:
        for old in state_dir.glob("hits-*.npz"):
            old.unlink()
        t0 = time.monotonic()
        index = build_index(m, spec)
        build_s = time.monotonic() - t0
        faiss.write_index(index, str(index_file.with_suffix(".tmp")))
        os.replace(index_file.with_suffix(".tmp"), index_file)
        done = []
        state = {
            "version": STATE_VERSION,
            "fingerprint": fp,
            "faces": n,
            "dim": d,
            "threshold": threshold,
            "chunk": chunk,
            "chunks": chunks,
            "spec": spec.describe(),
            "build_s": round(build_s, 3),
            "done": done,
        }
        _write_json(state_file, state)
    resumed_from = len(done)
    if progress is not None:
        progress(min(n, len(done) * chunk), n)
    for k in range(chunks):
        if k in done:
            continue
        start, stop = k * chunk, min(n, (k + 1) * chunk)
        p = range_pairs(index, m, start, stop, threshold)
        hits = state_dir / f"hits-{k:06d}.npz"
        with hits.with_suffix(".tmp").open("wb") as fh:
            np.savez(fh, i=p.i, j=p.j, score=p.score)
        os.replace(hits.with_suffix(".tmp"), hits)
        done.append(k)
        state["done"] = done
        _write_json(state_file, state)
        if progress is not None:
            progress(min(n, len(done) * chunk), n)
    parts = []
    for k in sorted(done):
        with np.load(state_dir / f"hits-{k:06d}.npz") as z:
            parts.append(Pairs(z["i"], z["j"], z["score"]))
    info = {
        **spec.describe(),
        "faces": n,
        "dim": d,
        "threshold": threshold,
        "chunks": chunks,
        "resumed_from_chunk": resumed_from if resumed_from else None,
        "build_s": round(build_s, 3),
        "run_s": round(time.monotonic() - started, 3),
        "index_file": str(index_file),
    }
    return NationalResult(unique_pairs(Pairs.concat(parts)), info)
