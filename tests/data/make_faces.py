"""Make tests/data/faces/ from the two public-domain sample portraits in edge/samples/faces.

Each identity gets the original and a fixed set of photographic variations (framing, scale,
a small roll, exposure, contrast, a mirror image, JPEG quality, sensor noise), so the tests
have genuine pairs (two photos of one person) and impostor pairs (across the two people)
without any photo from the LFW-derived dev set. Deterministic: re-running it writes the
same bytes (fixed parameters, a fixed noise seed, Pillow's JPEG encoder).

    .venv/bin/python tests/data/make_faces.py      # rewrites tests/data/faces/
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "edge" / "samples" / "faces"
OUT = Path(__file__).resolve().parent / "faces"
PEOPLE = ("eileen_collins", "grace_hopper")

Variation = Callable[[Image.Image], Image.Image]


def _reframe(dx: float, dy: float, scale: float) -> Variation:
    """Crop a window `scale` times the photo's size, shifted by (dx, dy) of its size."""

    def apply(im: Image.Image) -> Image.Image:
        w, h = im.size
        cw, ch = w * scale, h * scale
        left = (w - cw) / 2 + dx * w
        top = (h - ch) / 2 + dy * h
        box = (round(left), round(top), round(left + cw), round(top + ch))
        return im.crop(box).resize((w, h), Image.Resampling.BICUBIC)

    return apply


def _roll(degrees: float) -> Variation:
    def apply(im: Image.Image) -> Image.Image:
        return im.rotate(degrees, Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))

    return apply


def _light(brightness: float, contrast: float) -> Variation:
    def apply(im: Image.Image) -> Image.Image:
        return ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(brightness)).enhance(
            contrast
        )

    return apply


def _noise(sigma: float, seed: int) -> Variation:
    def apply(im: Image.Image) -> Image.Image:
        a = np.asarray(im, np.float32)
        a = a + np.random.default_rng(seed).normal(0.0, sigma, a.shape)
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))

    return apply


# (variation, JPEG quality); the first is the photo as shipped
VARIATIONS: list[tuple[Variation, int]] = [
    (lambda im: im, 90),
    (_reframe(0.04, -0.03, 0.85), 88),
    (_reframe(-0.05, 0.02, 0.9), 85),
    (_roll(6.0), 90),
    (_roll(-5.0), 80),
    (_light(0.8, 0.9), 90),
    (_light(1.2, 1.1), 90),
    (ImageOps.mirror, 90),
    (_noise(6.0, 18), 92),
    (lambda im: im, 45),
]


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    for person in PEOPLE:
        src = Image.open(SAMPLES / f"{person}.jpg").convert("RGB")
        folder = OUT / person
        folder.mkdir(parents=True)
        for i, (vary, quality) in enumerate(VARIATIONS, start=1):
            vary(src).save(folder / f"{person}_{i:04d}.jpg", quality=quality)
    print(f"wrote {sum(1 for _ in OUT.rglob('*.jpg'))} photos under {OUT}")


if __name__ == "__main__":
    main()
