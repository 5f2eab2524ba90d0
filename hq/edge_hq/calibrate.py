"""The 1:N operating point: an extreme-value fit of the impostor score tail, and thresholds
that keep the expected false leads per province per period under a reviewer's budget.

Why a fit: the labelled set has ~5.8 million impostor pairs, so its empirical FMR stops at
about 2e-7, while a national pass over 20 million faces needs FMR near 1e-11. Above a high
quantile u the exceedances of a score follow a generalized Pareto law (Pickands-Balkema-de
Haan); its two parameters are fitted by maximum likelihood (Grimshaw's profile over
theta = xi/sigma, pure numpy) and extrapolated. Uncertainty comes from a bootstrap over
identities (pairs that share a person are not independent, so resampling pairs would
understate it). Works for any embedding dimension: it only sees scores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TailFit:
    """P(S > t) = p_u * (1 + xi (t - u) / sigma) ** (-1 / xi) for t >= u."""

    u: float
    p_u: float
    xi: float
    sigma: float
    exceedances: int

    def fmr(self, t: float) -> float:
        if t < self.u:
            raise ValueError("the fit only describes scores above u")
        z = (t - self.u) / self.sigma
        if abs(self.xi) < 1e-9:
            return self.p_u * math.exp(-z)
        base = 1.0 + self.xi * z
        return 0.0 if base <= 0 else self.p_u * base ** (-1.0 / self.xi)

    def threshold(self, fmr: float) -> float:
        """The score whose FMR under the fit is `fmr` (<= p_u)."""
        r = fmr / self.p_u
        if abs(self.xi) < 1e-9:
            return self.u - self.sigma * math.log(r)
        return self.u + self.sigma / self.xi * (r ** (-self.xi) - 1.0)


def fit_gpd(y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """(xi, sigma) by weighted maximum likelihood for exceedances y > 0."""
    y = np.asarray(y, np.float64)
    w = np.ones_like(y) if w is None else np.asarray(w, np.float64)
    wsum, ymax = float(w.sum()), float(y.max())

    def profile(theta: float) -> tuple[float, float]:
        if abs(theta) < 1e-12:  # exponential limit
            sigma = float((w * y).sum() / wsum)
            return -wsum * math.log(sigma) - wsum, 0.0
        lg = np.log1p(theta * y)
        xi = float((w * lg).sum() / wsum)
        if xi == 0 or xi / theta <= 0:
            return -math.inf, xi
        return -wsum * math.log(xi / theta) - (1.0 / xi + 1.0) * float((w * lg).sum()), xi

    lo = -1.0 / ymax * (1 - 1e-6)
    grid = np.concatenate(
        [lo * np.geomspace(1.0, 1e-6, 200), [0.0], np.geomspace(1e-6, 1e4, 300) / ymax]
    )
    for _ in range(3):  # coarse grid, then two refinements around the best point
        vals = [profile(float(t))[0] for t in grid]
        k = int(np.argmax(vals))
        a, b = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
        grid = np.linspace(a, b, 201)
    theta = float(grid[int(np.argmax([profile(float(t))[0] for t in grid]))])
    if abs(theta) < 1e-12:
        return 0.0, float((w * y).sum() / wsum)
    xi = profile(theta)[1]
    return xi, xi / theta


def fit_tail(scores: np.ndarray, tail_fraction: float) -> TailFit:
    s = np.asarray(scores, np.float64)
    u = float(np.quantile(s, 1.0 - tail_fraction))
    y = s[s > u] - u
    xi, sigma = fit_gpd(y)
    return TailFit(u, y.size / s.size, xi, sigma, int(y.size))


def bootstrap_thresholds(
    imp: np.ndarray,
    pair_ids: tuple[np.ndarray, np.ndarray],
    per_identity: np.ndarray,
    fit: TailFit,
    fmrs: list[float],
    reps: int,
    seed: int,
) -> np.ndarray:
    """reps x len(fmrs) thresholds, each from a refit on identities drawn with replacement.

    A drawn identity's multiplicity weights every pair it is in; the impostor total under
    the draw is ((sum w n)^2 - sum (w n)^2) / 2 with n its usable photos."""
    exc = imp > fit.u
    y = imp[exc].astype(np.float64) - fit.u
    a, b = pair_ids[0][exc], pair_ids[1][exc]
    n_ids = per_identity.size
    rng = np.random.default_rng(seed)
    out = np.empty((reps, len(fmrs)))
    for r in range(reps):
        wid = np.bincount(rng.integers(0, n_ids, n_ids), minlength=n_ids).astype(np.float64)
        wn = wid * per_identity
        total = (wn.sum() ** 2 - (wn**2).sum()) / 2.0
        w = wid[a] * wid[b]
        keep = w > 0
        xi, sigma = fit_gpd(y[keep], w[keep])
        f = TailFit(fit.u, float(w.sum() / total), xi, sigma, int(keep.sum()))
        out[r] = [f.threshold(x) for x in fmrs]
    return out


@dataclass(frozen=True)
class Population:
    """What one period looks like nationally (docs/suspects.md states the sources)."""

    handovers: float = 20e6
    provinces: int = 38
    districts: int = 514  # kabupaten/kota
    subdistricts: int = 7277  # kecamatan
    block_skew: float = 2.0  # sum of squared block sizes over the equal-size value
    leads_per_province: float = 100.0  # a reviewer's budget per period, both passes
    region_share: float = 0.5  # of that budget, the in-region pass's part

    def pairs_per_province(self, level: str) -> float:
        """Impostor pairs one province's reviewers see from a pass at `level`."""
        n = self.handovers
        if level == "national":
            return n * (n - 1) / 2 / self.provinces
        blocks = self.districts if level == "district" else self.subdistricts
        per = n / blocks
        return blocks / self.provinces * per * per / 2 * self.block_skew

    def fmr_target(self, level: str) -> float:
        share = (1 - self.region_share) if level == "national" else self.region_share
        return self.leads_per_province * share / self.pairs_per_province(level)


def calibrate(
    gen: np.ndarray,
    imp: np.ndarray,
    imp_pairs: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray,
    ok: np.ndarray,
    pop: Population,
    tail_fraction: float = 1e-3,
    reps: int = 200,
    seed: int = 20261207,
) -> dict[str, Any]:
    """Thresholds per pass (national, district, subdistrict) at the upper 95% bound."""
    fit = fit_tail(imp, tail_fraction)
    levels = ["national", "district", "subdistrict"]
    fmrs = [pop.fmr_target(x) for x in levels]
    per_identity = np.bincount(labels[ok], minlength=int(labels.max()) + 1).astype(np.float64)
    boot = bootstrap_thresholds(
        imp, (labels[imp_pairs[0]], labels[imp_pairs[1]]), per_identity, fit, fmrs, reps, seed
    )
    floor = 1.0 / imp.size
    out: dict[str, Any] = {
        "impostor_pairs": int(imp.size),
        "genuine_pairs": int(gen.size),
        "empirical_fmr_floor": floor,
        "fit": asdict(fit),
        "tail_fraction": tail_fraction,
        "bootstrap": {"reps": reps, "over": "identities", "seed": seed},
        "population": asdict(pop),
        "imp_max": float(imp.max()),
        "levels": {},
    }
    for k, (level, target) in enumerate(zip(levels, fmrs, strict=True)):
        point = fit.threshold(target)
        lo, hi = (float(x) for x in np.percentile(boot[:, k], [2.5, 97.5]))
        chosen = round(math.ceil(hi * 1e4) / 1e4, 4)
        out["levels"][level] = {
            "pairs_per_province": pop.pairs_per_province(level),
            "fmr_target": target,
            "decades_beyond_data": round(math.log10(floor / target), 2),
            "threshold_point": round(point, 4),
            "threshold_95ci": [round(lo, 4), round(hi, 4)],
            "threshold": chosen,
            "fnmr": round(float(np.mean(gen < chosen)), 4),
            "fnmr_at_point": round(float(np.mean(gen < point)), 4),
            "impostors_at_or_above_in_data": int(np.count_nonzero(imp >= chosen)),
            "leads_per_province_at_point_fit": round(
                fit.fmr(chosen) * pop.pairs_per_province(level), 2
            ),
        }
    # how much the choice of u moves the answer (a fit that holds should barely care)
    out["u_sensitivity"] = {}
    for frac in (1e-2, 1e-3, 1e-4):
        f = fit_tail(imp, frac)
        out["u_sensitivity"][f"{frac:g}"] = {
            "u": round(f.u, 4),
            "xi": round(f.xi, 4),
            **{lv: round(f.threshold(t), 4) for lv, t in zip(levels, fmrs, strict=True)},
        }
    return out
