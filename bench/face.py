"""Face pipeline against dlib's ResNet (via face_recognition), in one run on the same photos.

    .venv/bin/python -m bench.face [--faces DIR] [--every 2] [--singles 200] [--json]

Needs (bench only, not on a kiosk): pip install dlib-bin face_recognition_models and
pip install --no-deps face_recognition. Single thread for both (OMP/BLAS threads 1,
TFLite num_threads 1). Each photo is run through ours and dlib back to back, so machine
load hits both alike; the report gives FNMR at FMR 1e-3 for both, time per face
(detect + align + embed) for both, and the ratios. A second table times every embedder
variant in the manifest under both runtimes (how int8 dynamic-range vs fp16 was chosen).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from edge_tools.evaluation import evaluate as ev  # noqa: E402

from edge.config import FaceConfig  # noqa: E402
from edge.infer.images import load_image  # noqa: E402
from edge.infer.manifest import load_manifest  # noqa: E402
from edge.infer.metrics import summary  # noqa: E402
from edge.infer.pipeline import FacePipeline  # noqa: E402

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces-dev"


def subset(root: Path, every: int, singles: int) -> ev.Dataset:
    """Every n-th identity with 2+ photos, plus the first `singles` one-photo identities."""
    full = ev.scan(root)
    counts = np.bincount(full.labels)
    multi = [i for i, c in enumerate(counts) if c >= 2][::every]
    one = [i for i, c in enumerate(counts) if c == 1][:singles]
    keep = sorted(multi + one)
    remap = {old: new for new, old in enumerate(keep)}
    mask = np.isin(full.labels, keep)
    return ev.Dataset(
        [full.names[i] for i in keep],
        [p for p, m in zip(full.paths, mask, strict=True) if m],
        np.array([remap[int(v)] for v in full.labels[mask]], np.int32),
        full.slices,
    )


class Dlib:
    """face_recognition: HOG detector, 5-point landmarks, ResNet-34 128-d, as commonly used."""

    def __init__(self) -> None:
        import face_recognition  # type: ignore[import-not-found]

        self.fr = face_recognition

    def embed(self, rgb: np.ndarray) -> np.ndarray | None:
        boxes = self.fr.face_locations(rgb, number_of_times_to_upsample=1, model="hog")
        if not boxes:
            return None
        h, w = rgb.shape[:2]
        box = min(
            boxes, key=lambda b: ((b[1] + b[3]) / 2 - w / 2) ** 2 + ((b[0] + b[2]) / 2 - h / 2) ** 2
        )
        enc = self.fr.face_encodings(rgb, known_face_locations=[box], num_jitters=1, model="small")
        return np.asarray(enc[0], np.float64) if enc else None


def run_pair(
    data: ev.Dataset, ours: FacePipeline, dlib: Dlib | None, progress: bool
) -> dict[str, Any]:
    n = len(data.paths)
    e_ours = np.full((n, 128), np.nan, np.float32)
    e_dlib = np.full((n, 128), np.nan, np.float64)
    t_ours: list[float] = []
    t_dlib: list[float] = []
    for i, path in enumerate(data.paths):
        rgb = load_image(path)
        t0 = time.perf_counter()
        r = ours.analyse(rgb, gates=False)
        t1 = time.perf_counter()
        t_ours.append(t1 - t0)
        if r.embedding is not None:
            e_ours[i] = r.embedding
        if dlib is not None:
            t2 = time.perf_counter()
            d = dlib.embed(rgb)
            t_dlib.append(time.perf_counter() - t2)
            if d is not None:
                e_dlib[i] = d
        if progress and i % 100 == 0:
            print(f"  {i}/{n}", file=sys.stderr, flush=True)
    out: dict[str, Any] = {"images": n, "identities": len(data.names)}
    systems: dict[str, tuple[np.ndarray, list[float], str]] = {"ours": (e_ours, t_ours, "cosine")}
    if dlib is not None:
        systems["dlib"] = (e_dlib, t_dlib, "neg_euclidean")
    for name, (emb, times, kind) in systems.items():
        ok = ~np.isnan(emb).any(axis=1)
        gi, gj = ev.genuine_pairs(data.labels)
        ii, ij = ev.impostor_pairs(data.labels, 50_000_000)
        gk, ik = ok[gi] & ok[gj], ok[ii] & ok[ij]
        if kind == "cosine":
            gen = np.einsum("ij,ij->i", emb[gi[gk]], emb[gj[gk]])
            imp = ev.pair_scores(emb.astype(np.float32), ii[ik], ij[ik])
        else:  # dlib compares by Euclidean distance; higher score = more similar
            gen = -np.linalg.norm(emb[gi[gk]] - emb[gj[gk]], axis=1)
            imp = np.concatenate(
                [
                    -np.linalg.norm(
                        emb[ii[ik][s : s + 500_000]] - emb[ij[ik][s : s + 500_000]], axis=1
                    )
                    for s in range(0, int(ik.sum()), 500_000)
                ]
            )
        s = summary(gen, imp)
        out[name] = {
            "failure_to_acquire": round(float((~ok).sum()) / n, 5),
            "fnmr_at_fmr_1e-3": s["at_fmr"]["0.001"]["fnmr"],  # type: ignore[index]
            "fnmr_at_fmr_1e-4": s["at_fmr"]["0.0001"]["fnmr"],  # type: ignore[index]
            "eer": s["eer"],
            "genuine_pairs": s["genuine_pairs"],
            "impostor_pairs": s["impostor_pairs"],
            "ms_per_face_median": round(1e3 * float(np.median(times)), 2),
            "ms_per_face_mean": round(1e3 * float(np.mean(times)), 2),
        }
    if dlib is not None:
        out["ratio_time_ours_over_dlib"] = round(
            out["ours"]["ms_per_face_median"] / out["dlib"]["ms_per_face_median"], 4
        )
        d_fnmr = out["dlib"]["fnmr_at_fmr_1e-3"]
        out["ratio_fnmr_ours_over_dlib"] = (
            round(out["ours"]["fnmr_at_fmr_1e-3"] / d_fnmr, 4) if d_fnmr else None
        )
    return out


def variant_timing(paths: list[Path], repeats: int = 1) -> list[dict[str, Any]]:
    """ms per face for each embedder variant x runtime (detect+align+embed; embed alone)."""
    m = load_manifest("")
    variants = [m.embedder.quantisation, *m.embedder.variants]
    frames = [load_image(p) for p in paths]
    pipes = {
        (v, rt): FacePipeline.from_config(FaceConfig(runtime=rt, threads=1), embedder_variant=v)
        for v in variants
        for rt in ("tflite_runtime", "litert")
    }
    times: dict[tuple[str, str], list[float]] = {k: [] for k in pipes}
    embed_t: dict[tuple[str, str], list[float]] = {k: [] for k in pipes}
    for _ in range(repeats):
        for f in frames:  # interleaved: every configuration sees the same load
            for key, p in pipes.items():
                t0 = time.perf_counter()
                r = p.analyse(f, gates=False)
                t1 = time.perf_counter()
                times[key].append(t1 - t0)
                if r.crop is not None:
                    p.embedder.embed(r.crop)
                    embed_t[key].append(time.perf_counter() - t1)
    base = ("fp32", "litert") if ("fp32", "litert") in pipes else next(iter(pipes))
    base_ms = float(np.median(times[base]))
    return [
        {
            "embedder": v,
            "runtime": rt,
            "ms_per_face": round(1e3 * float(np.median(times[(v, rt)])), 2),
            "ms_embed": round(1e3 * float(np.median(embed_t[(v, rt)])), 2),
            "ratio_vs_fp32_litert": round(float(np.median(times[(v, rt)])) / base_ms, 3),
        }
        for v, rt in pipes
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description="face pipeline vs dlib, same photos, one run")
    ap.add_argument("--faces", type=Path, default=FACES)
    ap.add_argument("--every", type=int, default=1, help="use every n-th multi-photo identity")
    ap.add_argument("--singles", type=int, default=800, help="one-photo distractor identities")
    ap.add_argument("--runtime", default="litert", choices=["tflite_runtime", "litert"])
    ap.add_argument("--no-dlib", action="store_true")
    ap.add_argument("--variant-faces", type=int, default=60, help="faces for the variant table")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    data = subset(args.faces, args.every, args.singles)
    ours = FacePipeline.from_config(FaceConfig(runtime=args.runtime, threads=1))
    dlib = None
    if not args.no_dlib:
        try:
            dlib = Dlib()
        except ImportError as exc:
            print(f"dlib/face_recognition unavailable ({exc}); ours only", file=sys.stderr)
    report = {"runtime": args.runtime, "embedder_sha256": ours.embedder_sha256}
    report["variants"] = variant_timing(
        data.paths[:: max(1, len(data.paths) // args.variant_faces)]
    )
    report["versus"] = run_pair(data, ours, dlib, progress=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    v = report["versus"]
    print(f"{v['images']} photos, {v['identities']} identities, {args.runtime}, 1 thread")
    for name in ("ours", "dlib"):
        if name in v:
            s = v[name]
            print(
                f"{name:5} FNMR@1e-3 {s['fnmr_at_fmr_1e-3']:.4f}  FNMR@1e-4 {s['fnmr_at_fmr_1e-4']:.4f}  "
                f"EER {s['eer']:.4f}  FTA {s['failure_to_acquire']:.4f}  {s['ms_per_face_median']:.1f} ms/face"
            )
    if "ratio_time_ours_over_dlib" in v:
        print(
            f"time ours/dlib: {v['ratio_time_ours_over_dlib']:.3f}  FNMR ours/dlib: {v['ratio_fnmr_ours_over_dlib']}"
        )
    for row in report["variants"]:
        print(
            f"embedder {row['embedder']:8} {row['runtime']:15} {row['ms_per_face']:7.1f} ms/face "
            f"(embed {row['ms_embed']:.1f} ms)  x{row['ratio_vs_fp32_litert']:.2f} vs fp32/litert"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
