"""1:N national pass at scale: FAISS index vs exact blockwise search, same data, same process.

    nice .venv/bin/python -m bench.hq_suspects [--n 100000,1000000,5000000] [--json]
        [--real /work/cache-hq/faces-dev-sface-int8.npz] [--threshold T]

Population: real faces-dev embeddings (all 3,409 usable photos, each enrolled as its own
KPM: the photos of the 372 identities with 2-12 photos are the planted duplicates, 9,640
true pairs, of which those at or above the threshold are what a search must find) among synthetic
faces drawn from a Gaussian fitted to the real embeddings (mean and covariance, with a
spread factor tuned so synthetic pairs' top-1e-3 score quantile equals the measured
impostor one; the other quantiles are printed next to the real ones as the check).

Each size runs in its own child process (peak RSS is that child's). Per size:
  exact   blockwise numpy (hq/edge_hq/suspects.exact_pairs): over all pairs at 100k; above
          that over the planted rows (plus `--sample` random rows) against all n, its
          time scaled by n / rows searched (every row costs the same n dot products)
  index   IndexIVFFlat (nlist 4*sqrt(n), nprobe 16) through hq/edge_hq/national: build and
          range search of every row at 100k and 1M; above 1M (unless --full) of the same
          rows the exact search used, time scaled the same way
  recall  of the exact pairs at or above the threshold found in the exact rows, by the index
At 100k also IndexHNSWFlat (M 32, efSearch 128), the alternative the choice was made
against. Extrapolation to 20 million: exact as n^2,
IVF as n^1.5 (nlist grows as sqrt(n), so each query scans ~sqrt(n) faces), memory as n.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_hq.config import SuspectsConfig
from edge_hq.national import IndexSpec, build_index, range_hits, range_pairs, tune
from edge_hq.suspects import Pairs, exact_pairs, normalise

REAL = Path("/work/cache-hq/faces-dev-sface-int8.npz")
SEED = 20261207
TARGET_N = 20_000_000


def load_real(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit embeddings, identity labels, photos per identity) of the usable photos."""
    with np.load(path, allow_pickle=False) as z:
        emb, ok, key = z["emb"], z["ok"], str(z["key"])
    paths = json.loads(key)[1]
    names = np.array([Path(p).parent.name for p in paths])
    emb, names = emb[ok], names[ok]
    _, labels, counts = np.unique(names, return_inverse=True, return_counts=True)
    return normalise(emb), labels, counts


class Synth:
    """Gaussian faces with the real embeddings' mean and covariance times `spread`."""

    def __init__(self, real: np.ndarray, spread: float) -> None:
        self.mu = real.mean(axis=0)
        cov = np.cov(real, rowvar=False)
        w, v = np.linalg.eigh(cov)
        self.root = (v * np.sqrt(np.clip(w, 0, None))).T.astype(np.float32)
        self.spread = spread

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((n, self.mu.size), np.float32)
        for s in range(0, n, 500_000):
            k = min(500_000, n - s)
            z = rng.standard_normal((k, self.mu.size), dtype=np.float32)
            out[s : s + k] = self.mu + self.spread * (z @ self.root)
        return normalise(out)


def random_pair_scores(m: np.ndarray, pairs: int, rng: np.random.Generator) -> np.ndarray:
    i = rng.integers(0, m.shape[0], pairs)
    j = rng.integers(0, m.shape[0], pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    out = np.empty(i.size, np.float32)
    for s in range(0, i.size, 500_000):  # chunks: two gathered copies would be 6 GB
        out[s : s + 500_000] = np.einsum("ij,ij->i", m[i[s : s + 500_000]], m[j[s : s + 500_000]])
    return out


def real_impostors(real: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = real @ real.T
    iu = np.triu_indices(real.shape[0], 1)
    return s[iu][labels[iu[0]] != labels[iu[1]]]


QUANTILES = (0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999)


def tune_spread(real: np.ndarray, imp: np.ndarray) -> tuple[float, dict[str, Any]]:
    """Bisection on spread so synthetic pairs' 0.999 quantile equals the real impostors'."""
    target = float(np.quantile(imp, 0.999))
    lo, hi = 0.5, 3.0
    for _ in range(14):
        mid = (lo + hi) / 2
        m = Synth(real, mid).draw(60_000, np.random.default_rng(SEED))
        q = float(np.quantile(random_pair_scores(m, 2_000_000, np.random.default_rng(1)), 0.999))
        lo, hi = (mid, hi) if q > target else (lo, mid)  # wider spread, lower scores
    spread = (lo + hi) / 2
    m = Synth(real, spread).draw(200_000, np.random.default_rng(SEED + 1))
    syn = random_pair_scores(m, imp.size, np.random.default_rng(2))
    check = {
        "spread": round(spread, 4),
        "pairs": int(imp.size),
        "quantiles": {
            f"{q:g}": {
                "real": round(float(np.quantile(imp, q)), 4),
                "synthetic": round(float(np.quantile(syn, q)), 4),
            }
            for q in QUANTILES
        },
        "fraction_at_or_above_0.4195": {
            "real": float(np.mean(imp >= 0.4195)),
            "synthetic": float(np.mean(syn >= 0.4195)),
        },
        "max": {"real": round(float(imp.max()), 4), "synthetic": round(float(syn.max()), 4)},
    }
    return spread, check


def exact_rows(m: np.ndarray, rows: np.ndarray, threshold: float) -> Pairs:
    """Pairs (min, max) with one end in `rows`, against all of m, blockwise."""
    parts = []
    step = max(1, (1 << 26) // m.shape[0])
    for s in range(0, rows.size, step):
        q = rows[s : s + step]
        sims = m[q] @ m.T
        r, c = np.nonzero(sims >= threshold)
        keep = c != q[r]
        r, c = r[keep], c[keep]
        a, b = q[r], c
        parts.append(Pairs(np.minimum(a, b), np.maximum(a, b), sims[r, c]))
    return Pairs.concat(parts)


def _rss_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would carry the parent's over exec)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_size(args: argparse.Namespace) -> dict[str, Any]:
    n, t = args.one, args.threshold
    real, labels, _ = load_real(Path(args.real))
    rng = np.random.default_rng(SEED + n)
    t0 = time.perf_counter()
    m = Synth(real, args.spread).draw(n, rng)
    planted = np.sort(rng.choice(n, size=real.shape[0], replace=False))
    m[planted] = real
    gen_s = time.perf_counter() - t0
    out: dict[str, Any] = {"n": n, "dim": int(m.shape[1]), "planted_faces": int(planted.size)}
    out["data_mb"] = round(m.nbytes / 2**20, 1)
    out["rss_after_data_mb"] = round(_rss_mb(), 1)
    true_planted = 0
    for lab in np.unique(labels):
        idx = np.nonzero(labels == lab)[0]
        s = real[idx] @ real[idx].T
        true_planted += int(np.count_nonzero(np.triu(s >= t, 1)))
    out["planted_true_pairs_at_threshold"] = true_planted
    out["generate_s"] = round(gen_s, 2)

    full = n <= 100_000
    if full:
        rows = np.arange(n)
        t0 = time.perf_counter()
        ex = exact_pairs(m, t)
        ex_s = time.perf_counter() - t0
    else:
        extra = rng.choice(n, size=args.sample, replace=False)
        rows = np.union1d(planted, extra)
        t0 = time.perf_counter()
        ex = exact_rows(m, rows, t)
        ex_s = time.perf_counter() - t0
    # exact work is the same per row (n dot products), so scale by the rows searched
    ex_full_s = ex_s * n / rows.size if not full else ex_s
    out["exact"] = {
        "rows_searched": int(rows.size),
        "pairs": len(ex.keys()),  # distinct (a pair of two searched rows comes twice)
        "time_s": round(ex_s, 2),
        "time_all_rows_s": round(ex_full_s, 1),
        "measured_on_all_rows": full,
    }
    out["rss_after_exact_mb"] = round(_rss_mb(), 1)
    truth = ex.keys()

    def run_index(spec: IndexSpec, queries_all: bool) -> dict[str, Any]:
        spec = spec.resolved(n)
        t0 = time.perf_counter()
        index = build_index(m, spec)
        build_s = time.perf_counter() - t0
        import faiss

        size = int(faiss.serialize_index(index).size)
        tune(index, spec)
        t0 = time.perf_counter()
        found: set[tuple[int, int]] = set()
        q_rows = np.arange(n) if queries_all else rows
        searched = 0
        for s in range(0, q_rows.size, 20_000):
            q = q_rows[s : s + 20_000]
            if queries_all:
                p = range_pairs(index, m, int(q[0]), int(q[-1]) + 1, t)
                found |= p.keys()
            else:
                r, lab, _d = range_hits(index, m[q], t)
                a, b = q[r], lab
                keep = a != b
                a, b = a[keep], b[keep]
                found |= set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))
            searched += q.size
        q_s = time.perf_counter() - t0
        hit = len(truth & found)
        res = {
            **spec.describe(),
            "build_s": round(build_s, 2),
            "query_rows": int(searched),
            "query_s": round(q_s, 2),
            "query_all_rows_s": round(q_s * n / searched, 1),
            "measured_on_all_rows": queries_all,
            "index_mb": round(size / 2**20, 1),
            "mb_per_million": round(size / 2**20 / n * 1e6, 1),
            "recall": round(hit / len(truth), 6) if truth else None,
            "true_pairs": len(truth),
            "found_of_true": hit,
            "extra_pairs": len(found - truth),
        }
        del index
        return res

    out["ivf"] = run_index(
        IndexSpec("ivf", 0, args.nprobe), queries_all=n <= 1_000_000 or args.full
    )
    out["rss_after_ivf_mb"] = round(_rss_mb(), 1)
    if n <= 100_000:
        out["hnsw"] = run_index(IndexSpec("hnsw", hnsw_m=32, ef_search=128), queries_all=True)
    out["peak_rss_mb"] = round(_rss_mb(), 1)
    return out


def extrapolate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    big = max(rows, key=lambda r: r["n"])
    f = TARGET_N / big["n"]
    ivf = big["ivf"]
    return {
        "from_n": big["n"],
        "exact_s": round(big["exact"]["time_all_rows_s"] * f * f),
        "ivf_build_s": round(ivf["build_s"] * f),
        "ivf_query_s": round(ivf["query_all_rows_s"] * f**1.5),
        "ivf_index_gb": round(ivf["mb_per_million"] * TARGET_N / 1e6 / 1024, 1),
        "data_gb": round(big["data_mb"] * f / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="100000,1000000,5000000", help="sizes, comma separated")
    ap.add_argument("--real", default=str(REAL), help="edge eval --cache .npz of faces-dev")
    ap.add_argument("--threshold", type=float, default=SuspectsConfig().national_threshold)
    ap.add_argument("--nprobe", type=int, default=SuspectsConfig().ivf_nprobe)
    ap.add_argument("--sample", type=int, default=1000, help="random exact rows above 100k")
    ap.add_argument("--full", action="store_true", help="index queries every row at any n")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spread", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not Path(args.real).is_file():
        print(
            f"hq_suspects: {args.real}: no cached faces-dev embeddings; make them with "
            "python -m bench.hq_calibrate --faces ../shared/data/faces-dev --cache PATH",
            file=sys.stderr,
        )
        return 2
    if args.one is not None:
        print(json.dumps(one_size(args)))
        return 0
    try:
        sizes = [int(x) for x in args.n.split(",")]
    except ValueError:
        print(
            f"hq_suspects: --n: expected sizes like 100000,1000000, got {args.n!r}", file=sys.stderr
        )
        return 2
    real, labels, _ = load_real(Path(args.real))
    if min(sizes) < 2 * real.shape[0]:
        print(f"hq_suspects: --n: each size must be at least {2 * real.shape[0]}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    imp = real_impostors(real, labels, np.random.default_rng(0))
    spread, check = tune_spread(real, imp)
    report: dict[str, Any] = {
        "threshold": args.threshold,
        "distribution_check": check,
        "conditions": {
            "cpus": os.cpu_count(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
            "nice": os.nice(0),
        },
        "sizes": [],
    }
    if not args.json:
        print(
            f"threshold {args.threshold}; synthetic spread {spread:.4f} (tuned in "
            f"{time.perf_counter() - t0:.0f} s); score quantiles real vs synthetic:"
        )
        for q, v in check["quantiles"].items():
            print(f"  q{q}: {v['real']:.4f} vs {v['synthetic']:.4f}")
    for n in sizes:
        cmd = [sys.executable, "-m", "bench.hq_suspects", "--one", str(n), "--real", args.real,
               "--threshold", str(args.threshold), "--spread", str(spread),
               "--sample", str(args.sample), "--nprobe", str(args.nprobe)] + (["--full"] if args.full else [])  # fmt: skip
        with tempfile.TemporaryFile() as err:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
            if proc.returncode != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace")[-400:]
                report["sizes"].append({"n": n, "error": f"exit {proc.returncode}: {tail}"})
                if not args.json:
                    print(f"n={n}: failed (exit {proc.returncode}, out of memory?)")
                break
        r = json.loads(proc.stdout)
        report["sizes"].append(r)
        if not args.json:
            ivf, ex = r["ivf"], r["exact"]
            print(f"n={n:,}: exact {ex['time_all_rows_s']} s"
                  f"{'' if ex['measured_on_all_rows'] else ' (scaled from ' + str(ex['rows_searched']) + ' rows)'}"
                  f", {ex['pairs']} pairs; IVF nlist {ivf['nlist']} nprobe {ivf['nprobe']}: build "
                  f"{ivf['build_s']} s, query {ivf['query_all_rows_s']} s"
                  f"{'' if ivf['measured_on_all_rows'] else ' (scaled)'}, index {ivf['index_mb']} MB"
                  f" ({ivf['mb_per_million']} MB/M), recall {ivf['recall']} "
                  f"({ivf['found_of_true']}/{ivf['true_pairs']}); exact/IVF time "
                  f"{ex['time_all_rows_s'] / max(ivf['query_all_rows_s'] + ivf['build_s'], 1e-9):.1f}x; "
                  f"peak RSS {r['peak_rss_mb']} MB")  # fmt: skip
            for alt in ("hnsw",):
                if alt in r:
                    a = r[alt]
                    print(
                        f"   {a['index']}: build {a['build_s']} s, query {a['query_s']} s, "
                        f"{a['mb_per_million']} MB/M, recall {a['recall']}"
                    )
    done = [r for r in report["sizes"] if "error" not in r]
    if done:
        report["extrapolation_20M"] = extrapolate(done)
        report["recall"] = (
            min(r["ivf"]["recall"] for r in done if r["ivf"]["recall"] is not None)
            if any(r["ivf"]["recall"] is not None for r in done)
            else None
        )
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"recall (worst size): {report.get('recall')}")
        print(f"extrapolated to 20M: {report.get('extrapolation_20M')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
