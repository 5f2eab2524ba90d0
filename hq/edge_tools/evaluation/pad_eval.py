"""`edge liveness eval` behind the command: ISO/IEC 30107-3 figures on folders of photos.

A presentation is what one kiosk burst would see: consecutive frames of one capture
sequence (files named `..._<n>.jpg` in one folder are a sequence, ordered by n), cut into
bursts of `burst` frames; a photo with no sequence number is a presentation on its own.
Each presentation is decided by the kiosk's own rule (edge/infer/liveness.py): too few
judgeable frames is a failure to acquire (FTA), reported apart from APCER and BPCER.

APCER: attack presentations accepted as bona fide; BPCER: bona fide presentations
refused as attacks; BPCER100/BPCER20: BPCER at the threshold where APCER is 1% / 5%.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import BadInput
from edge.infer.images import load_image
from edge.infer.liveness import decide_liveness
from edge.infer.metrics import fnmr_at, threshold_at_fmr
from edge.infer.pipeline import FacePipeline, LivenessPolicy

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_SEQ = re.compile(r"^(?P<key>.+)_(?P<n>\d+)$")
BPCER_AT_APCER = {"bpcer100": 0.01, "bpcer20": 0.05}


@dataclass(frozen=True)
class Presentation:
    """Frames that one burst would see, and the first-level folder they came from."""

    folder: str
    frames: tuple[Path, ...]


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _order(p: Path) -> tuple[str, int]:
    m = _SEQ.match(p.stem)
    return (m.group("key"), int(m.group("n"))) if m else (p.stem, -1)


def presentations(root: Path, burst: int, folders: Sequence[str] = ()) -> list[Presentation]:
    """Bursts of up to `burst` consecutive frames per sequence (see the module docstring)."""
    if not root.is_dir():
        raise BadInput(f"{root}: not a folder of photos")
    groups: dict[tuple[str, str, str], list[Path]] = defaultdict(list)
    for path in _images(root):
        rel = path.relative_to(root)
        folder = rel.parts[0] if len(rel.parts) > 1 else ""
        if folders and folder not in folders:
            continue
        key, n = _order(path)
        groups[(folder, str(path.parent), key if n >= 0 else path.name)].append(path)
    out: list[Presentation] = []
    for (folder, _parent, _key), paths in sorted(groups.items()):
        paths.sort(key=lambda p: _order(p)[1])
        for i in range(0, len(paths), burst):
            out.append(Presentation(folder, tuple(paths[i : i + burst])))
    if not out:
        raise BadInput(
            f"{root}: no photos found" + (f" in folders {', '.join(folders)}" if folders else "")
        )
    return out


@dataclass(frozen=True)
class FrameScore:
    """One photo: status ok|no_face|poor_quality, and the fused liveness score if ok."""

    status: str
    score: float | None


def score_frames(
    pipeline: FacePipeline, paths: Iterable[Path], progress: Callable[[int], None] | None = None
) -> dict[Path, FrameScore]:
    """The liveness score of every photo that passes detection and the quality gates."""
    if pipeline.liveness is None:
        raise BadInput("liveness eval: the PAD models are not loaded")
    out: dict[Path, FrameScore] = {}
    for path in paths:
        r = pipeline.analyse(load_image(path), embed=False)
        out[path] = FrameScore(r.status, r.liveness)
        if progress is not None:
            progress(1)
    return out


@dataclass(frozen=True)
class Scored:
    """Presentation-level outcome: score (None = failure to acquire) and its folder."""

    folder: str
    score: float | None


def decide_presentations(
    items: Sequence[Presentation], frames: dict[Path, FrameScore], policy: LivenessPolicy
) -> list[Scored]:
    out = []
    for pres in items:
        scores = [s for f in pres.frames if (s := frames[f].score) is not None]
        rule = decide_liveness(
            scores, policy.threshold, policy.min_live_frames, policy.min_live_fraction
        )
        out.append(Scored(pres.folder, rule.score))
    return out


def apcer_at(attack: np.ndarray, t: float) -> float:
    return float(np.count_nonzero(attack >= t) / attack.size) if attack.size else float("nan")


def threshold_at_bpcer(bona: np.ndarray, target: float) -> float:
    """The highest threshold whose BPCER does not exceed target on these bona fide scores."""
    b = np.sort(np.asarray(bona, np.float64))
    if b.size == 0:
        raise ValueError("no bona fide scores")
    allowed = int(np.floor(target * b.size))  # bona fide that may fall below t
    return float(b[min(allowed, b.size - 1)])


def rates(bona: np.ndarray, attack: np.ndarray, threshold: float) -> dict[str, Any]:
    """APCER, BPCER at the threshold, BPCER100/BPCER20, EER-free summary of one level."""
    out: dict[str, Any] = {
        "apcer": apcer_at(attack, threshold),
        "bpcer": fnmr_at(bona, threshold),
        "apcer_errors": int(np.count_nonzero(attack >= threshold)),
        "bpcer_errors": int(np.count_nonzero(bona < threshold)),
    }
    for name, target in BPCER_AT_APCER.items():
        if attack.size and bona.size:
            t = threshold_at_fmr(attack, target)
            out[name] = fnmr_at(bona, t)
            out[f"{name}_threshold"] = t
        else:
            out[name] = None
    return out


def _level(
    bona: Sequence[float | None], attack: Sequence[float | None], threshold: float
) -> dict[str, Any]:
    b = np.array([s for s in bona if s is not None], np.float64)
    a = np.array([s for s in attack if s is not None], np.float64)
    out = {
        "bona_fide": len(bona),
        "attack": len(attack),
        "fta_bona_fide": (len(bona) - b.size) / len(bona) if bona else None,
        "fta_attack": (len(attack) - a.size) / len(attack) if attack else None,
        "fta": (len(bona) + len(attack) - b.size - a.size) / max(1, len(bona) + len(attack)),
    }
    out.update(rates(b, a, threshold))
    return out


def per_folder(scored: Sequence[Scored], threshold: float, attack: bool) -> dict[str, Any]:
    by: dict[str, list[float | None]] = defaultdict(list)
    for s in scored:
        by[s.folder or "."].append(s.score)
    out = {}
    for folder, scores in sorted(by.items()):
        judged = np.array([s for s in scores if s is not None], np.float64)
        key = "apcer" if attack else "bpcer"
        value = apcer_at(judged, threshold) if attack else fnmr_at(judged, threshold)
        out[folder] = {
            "presentations": len(scores),
            "fta": (len(scores) - judged.size) / len(scores),
            key: value if judged.size else None,
        }
    return out


def report(
    bona_items: Sequence[Presentation],
    attack_items: Sequence[Presentation],
    frames: dict[Path, FrameScore],
    policy: LivenessPolicy,
    target_bpcer: float | None = None,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The whole report, and (bona, attack) score arrays per presentation and per frame."""
    t = policy.threshold
    bona = decide_presentations(bona_items, frames, policy)
    attack = decide_presentations(attack_items, frames, policy)
    bona_frames = [frames[f].score for p in bona_items for f in p.frames]
    attack_frames = [frames[f].score for p in attack_items for f in p.frames]
    pres = _level([s.score for s in bona], [s.score for s in attack], t)
    frame = _level(bona_frames, attack_frames, t)
    rep: dict[str, Any] = {
        "apcer": pres["apcer"],
        "bpcer": pres["bpcer"],
        "fta": pres["fta"],
        "threshold": t,
        "rule": {
            "min_live_frames": policy.min_live_frames,
            "min_live_fraction": policy.min_live_fraction,
        },
        "presentation": pres,
        "frame": frame,
        "per_folder": {
            "attack": per_folder(attack, t, attack=True),
            "bona_fide": per_folder(bona, t, attack=False),
        },
    }
    arrays_p = (
        np.array([s.score for s in bona if s.score is not None], np.float64),
        np.array([s.score for s in attack if s.score is not None], np.float64),
    )
    arrays_f = (
        np.array([s for s in bona_frames if s is not None], np.float64),
        np.array([s for s in attack_frames if s is not None], np.float64),
    )
    if target_bpcer is not None and arrays_p[0].size:
        tc = threshold_at_bpcer(arrays_p[0], target_bpcer)
        rep["calibration"] = {
            "target_bpcer": target_bpcer,
            "threshold": round(tc, 6),
            "at_threshold": rates(arrays_p[0], arrays_p[1], tc),
        }
    return rep, arrays_p, arrays_f
