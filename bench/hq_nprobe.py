"""IVF recall against nprobe on the planted faces-dev pairs (the population of
bench/hq_suspects.py: same seed, same spread), to choose `ivf_nprobe` for a period size.

    nice .venv/bin/python -m bench.hq_nprobe [--n 5000000] [--nprobe 16,24,32,48,64,128]

Exact search of the planted rows against all n gives the true pairs at the threshold; the
IVF index (nlist 4*sqrt(n)) is built once and its range search over the same rows is run
at each nprobe (a pair counts when either end finds it, as in the national pass).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.hq_suspects import REAL, SEED, Synth, exact_rows, load_real
from edge_hq.config import SuspectsConfig
from edge_hq.national import IndexSpec, build_index, range_hits

SPREAD = 1.032  # bench.hq_suspects' tuned value (its distribution_check)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5_000_000)
    ap.add_argument("--nprobe", default="16,24,32,48,64,128")
    ap.add_argument("--real", default=str(REAL))
    ap.add_argument("--threshold", type=float, default=SuspectsConfig().national_threshold)
    args = ap.parse_args(argv)
    real, _labels, _ = load_real(Path(args.real))
    n, t = args.n, args.threshold
    rng = np.random.default_rng(SEED + n)
    m = Synth(real, SPREAD).draw(n, rng)
    planted = np.sort(rng.choice(n, size=real.shape[0], replace=False))
    m[planted] = real
    truth = exact_rows(m, planted, t).keys()
    spec = IndexSpec("ivf", 0, 16).resolved(n)
    t0 = time.perf_counter()
    index = build_index(m, spec)
    print(f"n {n:,}, nlist {spec.nlist}, build {time.perf_counter() - t0:.1f} s, "
          f"true pairs {len(truth)}")  # fmt: skip
    for nprobe in (int(x) for x in args.nprobe.split(",")):
        index.nprobe = nprobe
        t0 = time.perf_counter()
        r, lab, _d = range_hits(index, m[planted], t)
        q = planted[r]
        keep = q != lab
        found = set(
            zip(np.minimum(q, lab)[keep].tolist(), np.maximum(q, lab)[keep].tolist(), strict=True)
        )
        hit = len(truth & found)
        print(f"nprobe {nprobe}: recall {hit / len(truth):.4f} ({hit}/{len(truth)}), "
              f"{time.perf_counter() - t0:.2f} s for {planted.size} queries")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
