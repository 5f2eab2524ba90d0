"""Draw DET curves (FNMR against FMR, log axes) with matplotlib's non-GUI backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.infer.metrics import error_curve


def plot_det(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    out: Path,
    title: str = "DET",
    marks: dict[str, float] | None = None,
    axes: tuple[str, str] = ("false match rate (FMR)", "false non-match rate (FNMR)"),
) -> None:
    """curves: label -> (genuine scores, impostor scores); marks: label -> FMR to mark.

    For PAD the same curve is APCER (attacks accepted) against BPCER (bona fide refused):
    pass bona fide scores as "genuine", attack scores as "impostor" and PAD axis names.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    floor = 1e-6
    for label, (gen, imp) in curves.items():
        c = error_curve(gen, imp, 4001)
        ax.plot(np.maximum(c.fmr, floor), np.maximum(c.fnmr, floor), label=label)
    for label, f in (marks or {}).items():
        ax.axvline(f, color="grey", linestyle=":", linewidth=1)
        ax.text(f, 0.5, label, rotation=90, fontsize=7, color="grey", va="center")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-5, 1)
    ax.set_ylim(1e-4, 1)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
