"""Shared helpers for the face tests: where the dev faces are, small subsets, pipelines.

The photos are never copied into the repo; a subset is a folder of symlinks in tmp.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge.config import FaceConfig
from edge.infer.images import load_image
from edge.infer.pipeline import FacePipeline

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces-dev"
RUNTIMES = ("tflite_runtime", "litert")


@lru_cache(maxsize=8)
def _identities(min_photos: int) -> tuple[str, ...]:
    folders = (p for p in FACES.iterdir() if p.is_dir())
    return tuple(sorted(p.name for p in folders if len(list(p.glob("*.jpg"))) >= min_photos))


def identities(min_photos: int = 2) -> list[str]:
    """Identity folder names (sorted) with at least min_photos photos (scanned once)."""
    return list(_identities(min_photos))


def photos(name: str) -> list[Path]:
    return sorted((FACES / name).glob("*.jpg"))


def face(name: str, i: int = 0) -> np.ndarray:
    return load_image(photos(name)[i])


def make_subset(dest: Path, n_multi: int, n_single: int = 0, slice_from: int = 3) -> Path:
    """A small eval folder: n_multi identities with 2+ photos, n_single distractors,
    and a slices.json naming some of the multi-photo identities."""
    many = identities(2)
    multi = many[:: max(1, len(many) // n_multi)][:n_multi]
    taken = set(many)
    singles = [n for n in identities(1) if n not in taken]
    dest.mkdir(parents=True, exist_ok=True)
    for name in multi + singles[:n_single]:
        (dest / name).symlink_to(FACES / name, target_is_directory=True)
    (dest / "slices.json").write_text(json.dumps({"sample": multi[:slice_from]}))
    return dest


@lru_cache(maxsize=4)
def pipeline(runtime: str = "litert", variant: str | None = None) -> FacePipeline:
    """One pipeline per runtime (loading is cheap, but the tests share it)."""
    return FacePipeline.from_config(
        FaceConfig(runtime=runtime, threads=1), embedder_variant=variant
    )
