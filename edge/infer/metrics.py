"""Biometric error rates over score arrays (pure): thresholds at a target FMR, FNMR, EER, DET.

Convention: a pair matches when score >= threshold. FMR = impostor scores >= t,
FNMR = genuine scores < t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def threshold_at_fmr(impostor: np.ndarray, target_fmr: float) -> float:
    """The lowest threshold whose FMR does not exceed target_fmr on these impostor scores."""
    imp = np.sort(np.asarray(impostor, np.float64))[::-1]
    if imp.size == 0:
        raise ValueError("no impostor scores")
    allowed = int(np.floor(target_fmr * imp.size))  # impostors that may score >= t
    if allowed >= imp.size:
        return float(imp[-1])
    # t just above the (allowed+1)-th highest impostor score
    return float(np.nextafter(imp[allowed], np.inf))


def fmr_at(impostor: np.ndarray, t: float) -> float:
    imp = np.asarray(impostor)
    return float(np.count_nonzero(imp >= t) / imp.size) if imp.size else float("nan")


def fnmr_at(genuine: np.ndarray, t: float) -> float:
    gen = np.asarray(genuine)
    return float(np.count_nonzero(gen < t) / gen.size) if gen.size else float("nan")


@dataclass(frozen=True)
class ErrorCurve:
    thresholds: np.ndarray
    fmr: np.ndarray
    fnmr: np.ndarray


def error_curve(genuine: np.ndarray, impostor: np.ndarray, points: int = 2001) -> ErrorCurve:
    """FMR and FNMR over a threshold sweep spanning all scores (for EER and the DET plot)."""
    gen = np.sort(np.asarray(genuine, np.float64))
    imp = np.sort(np.asarray(impostor, np.float64))
    lo = min(gen[0], imp[0])
    hi = max(gen[-1], imp[-1])
    ts = np.linspace(lo, hi + 1e-9, points)
    fnmr = np.searchsorted(gen, ts, side="left") / gen.size
    fmr = 1.0 - np.searchsorted(imp, ts, side="left") / imp.size
    return ErrorCurve(ts, fmr, fnmr)


def eer(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(equal error rate, its threshold), from the sweep point where FMR and FNMR cross."""
    c = error_curve(genuine, impostor, 4001)
    i = int(np.argmin(np.abs(c.fmr - c.fnmr)))
    return float((c.fmr[i] + c.fnmr[i]) / 2.0), float(c.thresholds[i])


def summary(
    genuine: np.ndarray, impostor: np.ndarray, fmrs: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
) -> dict[str, object]:
    """FNMR at each target FMR (with the threshold), EER, pair counts."""
    out: dict[str, object] = {
        "genuine_pairs": int(np.size(genuine)),
        "impostor_pairs": int(np.size(impostor)),
    }
    at: dict[str, dict[str, float]] = {}
    for f in fmrs:
        t = threshold_at_fmr(impostor, f)
        at[f"{f:g}"] = {
            "threshold": round(t, 6),
            "fnmr": round(fnmr_at(genuine, t), 6),
            "fmr": round(fmr_at(impostor, t), 8),
        }
    out["at_fmr"] = at
    e, et = eer(genuine, impostor)
    out["eer"] = round(e, 6)
    out["eer_threshold"] = round(et, 6)
    return out
