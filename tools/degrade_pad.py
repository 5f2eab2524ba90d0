"""Write degraded copies of a PAD photo set: the field conditions a village kiosk meets.

    python -m tools.degrade_pad SRC DEST [--conditions overexposed,dim_noise,blur,lowres,jpeg]
        [--seed N]

SRC holds bona-fide/<subject>/*.jpg and attack/<subject>/*.jpg (pad-dev's layout); DEST
gets DEST/<condition>/{bona-fide,attack}/<subject>/<same file name> for every condition,
so the sequence numbering (`..._<n>.jpg`) that groups frames into presentations is kept.
Bona fide and attack photos get exactly the same treatment. PIL and numpy only.

Deterministic: every photo draws its parameters and noise from its own generator, seeded
by (--seed, condition, path relative to SRC), so a re-run (or a run over a subset, or in
another order) writes the same bytes. The seed is printed. pad-dev is research-only:
write DEST under /tmp, never into the repository.

Conditions (pad-dev frames are 640x480 webcam photos; parameters drawn per photo):
  overexposed  midday sun on an auto-exposure miss: every channel value x gain, gain
               uniform in [1.8, 2.2], clipped to 255 (highlights burn out; on a face
               that is mostly bright skin, much of the face clips).
  dim_noise    a dim room at short exposure / high analogue gain: x 0.35, then sensor noise
               added per pixel and channel: read noise sigma uniform in [8, 12] (on 0..255)
               plus shot noise of variance 0.5 x signal (about sigma 5 at signal 50), rounded
               and clipped.
  blur         defocus of cheap optics: Gaussian blur, radius (PIL's standard deviation)
               uniform in [2.5, 3.0] px at 640x480.
  lowres       a cheap sensor / a subject far away: area downscale to 160x120, then
               bilinear upscale back to 640x480. Upscaled rather than kept small because the
               kiosk's camera delivers 1280x960 and the face-size gate (min_face_px) would
               otherwise refuse every face outright; this keeps the face's pixel size and
               removes the detail (the same content a 160x120 sensor would see).
  jpeg         heavy compression (a cheap USB camera's MJPEG, a re-encoded upload): JPEG
               quality uniform integer in [10, 15], 4:2:0 chroma.
The other conditions are saved as JPEG quality 95 (4:4:4), which adds little on top.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

DEFAULT_SEED = 20261207
CONDITIONS = ("overexposed", "dim_noise", "blur", "lowres", "jpeg")
CLASSES = ("bona-fide", "attack")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}

# (image, rng) -> (degraded image, JPEG quality to save with)
Degrade = Callable[[Image.Image, np.random.Generator], tuple[Image.Image, int]]


def _to_img(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "RGB")


def overexposed(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    gain = rng.uniform(1.8, 2.2)
    return _to_img(np.asarray(img, np.float64) * gain), 95


def dim_noise(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    signal = np.asarray(img, np.float64) * 0.35
    read = rng.uniform(8.0, 12.0)
    sigma = np.sqrt(read**2 + 0.5 * signal)
    return _to_img(signal + rng.standard_normal(signal.shape) * sigma), 95


def blur(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    return img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(2.5, 3.0)))), 95


def lowres(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    small = img.resize((160, 120), Image.Resampling.BOX)
    return small.resize(img.size, Image.Resampling.BILINEAR), 95


def jpeg(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    return img, int(rng.integers(10, 16))


DEGRADE: dict[str, Degrade] = {
    "overexposed": overexposed,
    "dim_noise": dim_noise,
    "blur": blur,
    "lowres": lowres,
    "jpeg": jpeg,
}


def rng_for(seed: int, condition: str, rel: str) -> np.random.Generator:
    """One generator per (seed, condition, photo): independent of order and subset."""
    digest = hashlib.sha256(f"{seed}/{condition}/{rel}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def photos(src: Path) -> list[Path]:
    out = []
    for cls in CLASSES:
        root = src / cls
        if not root.is_dir():
            raise SystemExit(f"{root}: missing (expected {'/'.join(CLASSES)} under SRC)")
        out += sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    return out


def write_condition(src: Path, dest: Path, condition: str, seed: int) -> int:
    fn = DEGRADE[condition]
    n = 0
    for path in photos(src):
        rel = path.relative_to(src)
        with Image.open(path) as im:
            img = im.convert("RGB")
        out, quality = fn(img, rng_for(seed, condition, rel.as_posix()))
        target = dest / condition / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        subsampling = 0 if quality >= 90 else 2
        out.save(target.with_suffix(".jpg"), "JPEG", quality=quality, subsampling=subsampling)
        n += 1
    return n


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    wanted = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in DEGRADE]
    if unknown:
        ap.error(f"unknown condition(s) {', '.join(unknown)} (have: {', '.join(CONDITIONS)})")
    print(f"degrade_pad: seed {args.seed}", file=sys.stderr)
    for c in wanted:
        n = write_condition(args.src, args.dest, c, args.seed)
        print(f"degrade_pad: {c}: {n} photos -> {args.dest / c}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
