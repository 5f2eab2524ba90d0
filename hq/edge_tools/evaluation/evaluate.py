"""`edge eval` behind the command: embed a folder of identity folders, score pairs, report.

All genuine pairs; impostor pairs all of them when there are at most `max_impostors`,
else a deterministic sample (seeded) of that many (never fewer than 200,000 unless the
set has fewer). Images where no face is found count as failures to acquire (FTA) and
are left out of the pairs; `fnmr_with_fta` also counts their genuine pairs as misses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import BadInput
from edge.infer.images import load_image
from edge.infer.metrics import fmr_at, fnmr_at, summary, threshold_at_fmr
from edge.infer.pipeline import FacePipeline

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MIN_IMPOSTORS = 200_000
FMRS = (1e-2, 1e-3, 1e-4)


@dataclass
class Dataset:
    """Images and their identity index, in a stable (sorted) order."""

    names: list[str]
    paths: list[Path]
    labels: np.ndarray
    slices: dict[str, list[str]]


def scan(root: Path, limit_identities: int | None = None) -> Dataset:
    """Identity folders under root (sorted); slices from root/slices.json if present."""
    if not root.is_dir():
        raise BadInput(f"{root}: not a folder of identity folders")
    names: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    for folder in folders:
        imgs = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not imgs:
            continue
        names.append(folder.name)
        paths.extend(imgs)
        labels.extend([len(names) - 1] * len(imgs))
        if limit_identities is not None and len(names) >= limit_identities:
            break
    if len(names) < 2:
        raise BadInput(f"{root}: need at least 2 identity folders with images")
    slices: dict[str, list[str]] = {}
    sfile = root / "slices.json"
    if sfile.exists():
        try:
            raw = json.loads(sfile.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadInput(f"{sfile}: unreadable: {exc}") from None
        if not isinstance(raw, dict) or not all(
            isinstance(v, list) and all(isinstance(n, str) for n in v) for v in raw.values()
        ):
            raise BadInput(f'{sfile}: expected {{"slice": [identity names]}}')
        slices = {str(k): list(v) for k, v in raw.items()}
    return Dataset(names, paths, np.asarray(labels, np.int32), slices)


def embed_dataset(
    pipeline: FacePipeline,
    data: Dataset,
    progress: Callable[[int], None] | None = None,
    gates: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(embeddings N x 128 with NaN rows where acquisition failed, acquired mask, counts)."""
    emb = np.full((len(data.paths), 128), np.nan, np.float32)
    ok = np.zeros(len(data.paths), bool)
    counts = {"no_face": 0, "poor_quality": 0, "unreadable": 0, "would_fail_gates": 0}
    for i, path in enumerate(data.paths):
        try:
            frame = load_image(path)
        except BadInput:
            counts["unreadable"] += 1
        else:
            r = pipeline.analyse(frame, gates=gates)
            if r.status == "ok" and r.embedding is not None:
                emb[i] = r.embedding
                ok[i] = True
                if r.quality is not None and _fails(pipeline, r):
                    counts["would_fail_gates"] += 1
            else:
                counts[r.status] += 1
        if progress is not None:
            progress(1)
    return emb, ok, counts


def _fails(pipeline: FacePipeline, r: Any) -> bool:
    from edge.infer.quality import gate

    return gate(r.quality, pipeline.limits) is not None


def genuine_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ii, jj = [], []
    for lab in np.unique(labels):
        idx = np.nonzero(labels == lab)[0]
        a, b = np.triu_indices(idx.size, k=1)
        ii.append(idx[a])
        jj.append(idx[b])
    return np.concatenate(ii), np.concatenate(jj)


def impostor_pairs(
    labels: np.ndarray, max_pairs: int, seed: int = 20261128
) -> tuple[np.ndarray, np.ndarray]:
    """All cross-identity pairs (i < j) if few enough, else a seeded sample of max_pairs."""
    n = labels.size
    total = n * (n - 1) // 2 - sum(int(c) * (int(c) - 1) // 2 for c in np.bincount(labels))
    if total <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        keep = labels[i] != labels[j]
        return i[keep], j[keep]
    rng = np.random.default_rng(seed)
    got_i: list[int] = []
    got_j: list[int] = []
    have = 0
    seen: set[int] = set()
    while have < max_pairs:
        a = rng.integers(0, n, size=max_pairs)
        b = rng.integers(0, n, size=max_pairs)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keep = labels[lo] != labels[hi]
        for x, y in zip(lo[keep].tolist(), hi[keep].tolist(), strict=True):
            key = x * n + y
            if key in seen:
                continue
            seen.add(key)
            got_i.append(x)
            got_j.append(y)
            have += 1
            if have == max_pairs:
                break
    return np.asarray(got_i, np.int64), np.asarray(got_j, np.int64)


def pair_scores(
    emb: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 1_000_000
) -> np.ndarray:
    out = np.empty(i.size, np.float32)
    for s in range(0, i.size, chunk):
        out[s : s + chunk] = np.einsum("ij,ij->i", emb[i[s : s + chunk]], emb[j[s : s + chunk]])
    return out


@dataclass
class Scores:
    gen: np.ndarray
    imp: np.ndarray
    gen_pairs: tuple[np.ndarray, np.ndarray]
    imp_pairs: tuple[np.ndarray, np.ndarray]
    gen_lost: int  # genuine pairs not scored because an image failed to acquire


def score_pairs(emb: np.ndarray, ok: np.ndarray, labels: np.ndarray, max_impostors: int) -> Scores:
    gi, gj = genuine_pairs(labels)
    ii, ij = impostor_pairs(labels, max(max_impostors, MIN_IMPOSTORS))
    gkeep = ok[gi] & ok[gj]
    ikeep = ok[ii] & ok[ij]
    gi, gj, ii, ij = gi[gkeep], gj[gkeep], ii[ikeep], ij[ikeep]
    return Scores(
        pair_scores(emb, gi, gj),
        pair_scores(emb, ii, ij),
        (gi, gj),
        (ii, ij),
        int((~gkeep).sum()),
    )


def split_half(sc: Scores, labels: np.ndarray, target_fmr: float, seed: int = 7) -> dict[str, Any]:
    """Threshold from one half of the identities, its FMR/FNMR checked on the other half."""
    ids = np.unique(labels)
    rng = np.random.default_rng(seed)
    half_a = set(rng.permutation(ids)[: ids.size // 2].tolist())
    in_a = np.array([lab in half_a for lab in labels])
    out: dict[str, Any] = {"target_fmr": target_fmr, "seed": seed}
    halves = {"A": in_a, "B": ~in_a}
    for name, mask in halves.items():
        other = "B" if name == "A" else "A"
        om = halves[other]
        imp_self = sc.imp[mask[sc.imp_pairs[0]] & mask[sc.imp_pairs[1]]]
        imp_other = sc.imp[om[sc.imp_pairs[0]] & om[sc.imp_pairs[1]]]
        gen_other = sc.gen[om[sc.gen_pairs[0]]]
        if imp_self.size == 0 or imp_other.size == 0:
            out[f"calibrate_on_{name}"] = None  # too few identities to split
            continue
        t = threshold_at_fmr(imp_self, target_fmr)
        out[f"calibrate_on_{name}"] = {
            "identities": int(sum(1 for i in ids if (i in half_a) == (name == "A"))),
            "threshold": round(t, 6),
            f"fmr_on_{other}": round(fmr_at(imp_other, t), 8),
            f"fnmr_on_{other}": round(fnmr_at(gen_other, t), 6),
            f"impostor_pairs_{other}": int(imp_other.size),
        }
    return out


def slice_report(
    sc: Scores, data: Dataset, thresholds: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Per slice, at the global thresholds: FNMR on its genuine pairs and FMR on impostor
    pairs that involve one of its identities."""
    out: dict[str, dict[str, Any]] = {}
    for sname, members in data.slices.items():
        idx = {data.names.index(m) for m in members if m in data.names}
        if not idx:
            continue
        member = np.isin(data.labels, sorted(idx))
        gen = sc.gen[member[sc.gen_pairs[0]]]
        imp = sc.imp[member[sc.imp_pairs[0]] | member[sc.imp_pairs[1]]]
        rep: dict[str, Any] = {
            "identities": len(idx),
            "images": int(member.sum()),
            "genuine_pairs": int(gen.size),
            "impostor_pairs": int(imp.size),
            "at_fmr": {},
        }
        for key, t in thresholds.items():
            rep["at_fmr"][key] = {
                "threshold": round(t, 6),
                "fnmr": round(fnmr_at(gen, t), 6) if gen.size else None,
                "fmr": round(fmr_at(imp, t), 8) if imp.size else None,
            }
        out[sname] = rep
    return out


def evaluate(
    pipeline: FacePipeline,
    data: Dataset,
    *,
    target_fmr: float = 1e-3,
    threshold: float | None = None,
    max_impostors: int = 6_000_000,
    progress: Callable[[int], None] | None = None,
    embeddings: tuple[np.ndarray, np.ndarray, dict[str, int]] | None = None,
    references: int | None = None,
) -> tuple[dict[str, Any], Scores]:
    """The full report (JSON-ready) and the scores (for the DET plot).

    With `references` N, also one reference template against 2..N (reference_study)."""
    emb, ok, counts = embeddings or embed_dataset(pipeline, data, progress)
    sc = score_pairs(emb, ok, data.labels, max_impostors)
    if sc.gen.size == 0 or sc.imp.size == 0:
        raise BadInput(
            "evaluation: no genuine or no impostor pairs (need identities with 2+ photos)"
        )
    fmrs = tuple(sorted({*FMRS, target_fmr}, reverse=True))
    rep: dict[str, Any] = {
        "images": len(data.paths),
        "identities": len(data.names),
        "failure_to_acquire": round(float((~ok).sum()) / len(data.paths), 6),
        "acquire_failures": counts,
        "embedder_sha256": pipeline.embedder_sha256,
        "runtime": pipeline.runtime,
    }
    rep.update(summary(sc.gen, sc.imp, fmrs))
    total_gen = sc.gen.size + sc.gen_lost
    for v in rep["at_fmr"].values():
        missed = np.count_nonzero(sc.gen < v["threshold"]) + sc.gen_lost
        v["fnmr_with_fta"] = round(missed / total_gen, 6)
    calibrated = threshold_at_fmr(sc.imp, target_fmr)
    rep["target_fmr"] = target_fmr
    rep["calibrated_threshold"] = round(calibrated, 6)
    rep["split_half"] = split_half(sc, data.labels, target_fmr)
    thresholds = {k: float(v["threshold"]) for k, v in rep["at_fmr"].items()}
    if threshold is not None:
        rep["at_threshold"] = {
            "threshold": threshold,
            "fmr": round(fmr_at(sc.imp, threshold), 8),
            "fnmr": round(fnmr_at(sc.gen, threshold), 6),
        }
        thresholds["given"] = float(threshold)
    if data.slices:
        rep["slices"] = slice_report(sc, data, thresholds)
    if references is not None:
        rep["references"] = reference_study(
            emb, ok, data.labels, references, target_fmr=target_fmr, fixed_threshold=threshold
        )
    return rep, sc


def load_or_embed(
    pipeline: FacePipeline,
    data: Dataset,
    cache: Path | None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Embeddings from `cache` (.npz) when it was made by this embedder from these files,
    else computed (and saved there): the slow part is done once per model and folder."""
    key = json.dumps([pipeline.embedder_sha256, [str(p) for p in data.paths]])
    if cache is not None and cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    counts = json.loads(str(z["counts"]))
                    return z["emb"], z["ok"], {str(k): int(v) for k, v in counts.items()}
        except (OSError, KeyError, ValueError):
            pass  # unreadable or another format: recompute
    emb, ok, counts = embed_dataset(pipeline, data, progress)
    if cache is not None:
        with cache.open("wb") as fh:
            np.savez(fh, emb=emb, ok=ok, key=np.array(key), counts=np.array(json.dumps(counts)))
    return emb, ok, counts


# -- one reference template against several ------------------------------------------
def _halves(labels: np.ndarray, seed: int) -> np.ndarray:
    """Per identity: True in half A (seeded), so calibration and test never share a face."""
    ids = np.unique(labels)
    rng = np.random.default_rng(seed)
    in_a = set(rng.permutation(ids)[: ids.size // 2].tolist())
    return np.array([int(i) in in_a for i in range(int(labels.max()) + 1)])


def _gallery_scores(
    emb: np.ndarray,
    refs: np.ndarray,
    probes: list[int],
    probe_owner: np.ndarray,
    gallery_ids: np.ndarray,
    n: int,
    fuse: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) scores of probes against galleries of the first n references.

    refs: (identities x max_refs) image indices. A gallery scores its best template
    (the kiosk's rule), or, with fuse, one mean template of the n references.
    """
    r = emb[refs[:, :n]]  # G x n x 128
    if fuse:
        m = r.mean(axis=1)
        r = (m / np.linalg.norm(m, axis=1, keepdims=True))[:, None, :]
    p = emb[np.asarray(probes, np.int64)]  # P x 128
    s = np.einsum("pd,gkd->pgk", p, r).max(axis=2)  # P x G
    own = probe_owner[:, None] == gallery_ids[None, :]
    return s[own], s[~own]


def reference_study(
    emb: np.ndarray,
    ok: np.ndarray,
    labels: np.ndarray,
    max_refs: int = 3,
    *,
    target_fmr: float = 1e-3,
    fixed_threshold: float | None = None,
    repeats: int = 5,
    seed: int = 7,
) -> dict[str, Any]:
    """FNMR at FMR `target_fmr` with 1..max_refs reference templates per identity.

    Identities with at least max_refs + 1 acquired photos are enrolled: per repeat, a
    seeded shuffle picks max_refs of their photos as references (the first plays the
    civil-registry photo, the others earlier captures) and the rest are probes. All
    other acquired photos are impostor-only probes. Identities are split in halves: the
    threshold for each N is chosen on one half's impostor scores and FNMR/FMR measured on
    the other half (then the other way round), because more templates per gallery also
    raise the best impostor score, so each N needs its own threshold. The same probes
    are used for every N, so the differences are the references' doing.
    """
    if max_refs < 1:
        raise BadInput("--references: expected at least 1")
    idx_ok = np.nonzero(ok)[0]
    n_ids = int(labels.max()) + 1
    by_id = [idx_ok[labels[idx_ok] == i] for i in range(n_ids)]
    enrolled = np.array([i for i in range(n_ids) if by_id[i].size >= max_refs + 1], np.int64)
    if enrolled.size < 4:
        raise BadInput(f"evaluation: need 4+ identities with {max_refs + 1}+ photos")
    in_a = _halves(labels, seed)
    variants = [(n, False) for n in range(1, max_refs + 1)] + [
        (n, True) for n in range(2, max_refs + 1)
    ]
    pooled: dict[tuple[int, bool, str], tuple[list[np.ndarray], list[np.ndarray]]] = {}
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        refs = np.stack([rng.permutation(by_id[i])[:max_refs] for i in enrolled])
        used = set(refs.reshape(-1).tolist())
        for half, mask in (("A", in_a), ("B", ~in_a)):
            g = np.nonzero(mask[enrolled])[0]
            probes = [int(j) for j in idx_ok if mask[labels[j]] and int(j) not in used]
            owner = labels[np.asarray(probes, np.int64)]
            for n, fuse in variants:
                gen, imp = _gallery_scores(emb, refs[g], probes, owner, enrolled[g], n, fuse)
                acc = pooled.setdefault((n, fuse, half), ([], []))
                acc[0].append(gen)
                acc[1].append(imp)
    out: dict[str, Any] = {
        "max_refs": max_refs,
        "enrolled_identities": int(enrolled.size),
        "repeats": repeats,
        "seed": seed,
        "target_fmr": target_fmr,
        "rule": "best template counts (kiosk matcher); 'mean' = one fused template",
        "results": [],
    }
    for n, fuse in variants:
        row: dict[str, Any] = {"references": n, "templates": "mean" if fuse else "best"}
        fnmrs, fmrs = [], []
        for cal, test in (("A", "B"), ("B", "A")):
            imp_cal = np.concatenate(pooled[(n, fuse, cal)][1])
            gen_t = np.concatenate(pooled[(n, fuse, test)][0])
            imp_t = np.concatenate(pooled[(n, fuse, test)][1])
            t = threshold_at_fmr(imp_cal, target_fmr)
            fnmrs.append(fnmr_at(gen_t, t))
            fmrs.append(fmr_at(imp_t, t))
            row[f"calibrate_on_{cal}"] = {
                "threshold": round(t, 6),
                f"fnmr_on_{test}": round(fnmrs[-1], 6),
                f"fmr_on_{test}": round(fmrs[-1], 8),
                f"genuine_{test}": int(gen_t.size),
                f"impostor_{test}": int(imp_t.size),
            }
        row["fnmr"] = round(float(np.mean(fnmrs)), 6)
        row["fmr"] = round(float(np.mean(fmrs)), 8)
        if fixed_threshold is not None:
            gen = np.concatenate([np.concatenate(pooled[(n, fuse, h)][0]) for h in "AB"])
            imp = np.concatenate([np.concatenate(pooled[(n, fuse, h)][1]) for h in "AB"])
            row["at_threshold"] = {
                "threshold": fixed_threshold,
                "fnmr": round(fnmr_at(gen, fixed_threshold), 6),
                "fmr": round(fmr_at(imp, fixed_threshold), 8),
            }
        out["results"].append(row)
    base = out["results"][0]["fnmr"]
    for row in out["results"]:
        row["fnmr_ratio_to_one"] = round(row["fnmr"] / base, 4) if base else None
    return out
