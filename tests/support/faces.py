"""Photos and pipelines for the face tests.

By default the tests use the bundled set in tests/data/faces (two public-domain people,
ten photos each; see tests/data/README.md): genuine pairs within a person, impostor pairs
across. The labelled dev set (`faces-dev` under $BANSOS_DATA) is only for the `data` group:
`dev_faces()` returns it or fails with one line. Its photos are never copied into the repo;
a subset is a folder of symlinks in tmp.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge.config import FaceConfig
from edge.infer.images import load_image
from edge.infer.pipeline import FacePipeline
from tests.support.data import BUNDLED_FACES, shared_data

FACES = BUNDLED_FACES
PERSON = "eileen_collins"  # the genuine side of a test: several photos of one person
OTHER = "grace_hopper"  # somebody else: the impostor side
RUNTIMES = ("tflite_runtime", "litert")


def dev_faces() -> Path:
    """The labelled dev set (LFW-derived) under $BANSOS_DATA, for tests marked `data`."""
    return shared_data("faces-dev")


@lru_cache(maxsize=8)
def _identities(root: Path, min_photos: int) -> tuple[str, ...]:
    folders = (p for p in root.iterdir() if p.is_dir())
    return tuple(sorted(p.name for p in folders if len(list(p.glob("*.jpg"))) >= min_photos))


def identities(min_photos: int = 2, root: Path = FACES) -> list[str]:
    """Identity folder names (sorted) with at least min_photos photos (scanned once)."""
    return list(_identities(root, min_photos))


def photos(name: str, root: Path = FACES) -> list[Path]:
    return sorted((root / name).glob("*.jpg"))


def all_photos(root: Path = FACES) -> list[Path]:
    return sorted(root.glob("*/*.jpg"))


def face(name: str, i: int = 0, root: Path = FACES) -> np.ndarray:
    return load_image(photos(name, root)[i])


def make_subset(
    dest: Path, n_multi: int, n_single: int = 0, slice_from: int = 3, root: Path = FACES
) -> Path:
    """A small eval folder: n_multi identities with 2+ photos, n_single distractors,
    and a slices.json naming some of the multi-photo identities."""
    many = identities(2, root)
    multi = many[:: max(1, len(many) // n_multi)][:n_multi]
    taken = set(many)
    singles = [n for n in identities(1, root) if n not in taken]
    dest.mkdir(parents=True, exist_ok=True)
    for name in multi + singles[:n_single]:
        (dest / name).symlink_to(root / name, target_is_directory=True)
    (dest / "slices.json").write_text(json.dumps({"sample": multi[:slice_from]}))
    return dest


@lru_cache(maxsize=4)
def pipeline(runtime: str = "litert", variant: str | None = None) -> FacePipeline:
    """One pipeline per runtime (loading is cheap, but the tests share it)."""
    return FacePipeline.from_config(
        FaceConfig(runtime=runtime, threads=1), embedder_variant=variant
    )
