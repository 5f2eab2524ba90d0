"""Check the EdgeFace-XS conversion on real aligned faces, and time it against SFace.

Three steps, in two venvs (the project's has the runtimes, the convert venv has PyTorch):

1. crops (project .venv): the project's own YuNet detection and 112x112 alignment on an
   even spread of faces-dev photos -> an .npz of uint8 RGB crops (kept outside the repo);
2. compare (/work/convert-venv): for each crop, cosine of the float32 TFLite file and of
   the dynamic-range int8 file to the de-quantised PyTorch network (exact GELU: the
   original; tanh GELU: what was exported) -> the "agreement" section;
3. time (project .venv): median ms per embedding of SFace int8 (shipped) and EdgeFace-XS
   float32 / int8 under LiteRT and tflite_runtime, the same crops, one thread, in one
   process -> the "timing" section, with ratios to SFace under the same runtime.

Each step merges its section into tools/edgeface_conversion_check.json.

Usage:
  .venv/bin/python -m tools.check_edgeface_conversion crops --out /tmp/edgeface-crops.npz
  /work/convert-venv/bin/python -m tools.check_edgeface_conversion compare \
      --crops /tmp/edgeface-crops.npz --int8 /tmp/edgeface-variants/edgeface_xs_int8dr.tflite
  .venv/bin/python -m tools.check_edgeface_conversion time --crops /tmp/edgeface-crops.npz \
      --int8 /tmp/edgeface-variants/edgeface_xs_int8dr.tflite
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "tools/edgeface_conversion_check.json"
MODELS = ROOT / "edge/infer/models"
DEFAULT_FACES = Path("/work/shared/data/faces-dev")
MEAN = STD = 127.5


def merge_report(section: str, value: Any) -> None:
    report: dict[str, Any] = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    report[section] = value
    REPORT.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(json.dumps({section: value}, indent=2))


def cmd_crops(args: argparse.Namespace) -> int:
    from edge.config import FaceConfig
    from edge.infer.images import load_image
    from edge.infer.pipeline import FacePipeline

    pipe = FacePipeline.from_config(FaceConfig(runtime="litert", threads=1))
    people = sorted(p for p in args.faces.iterdir() if p.is_dir())
    multi = [p for p in people if len(list(p.glob("*.jpg"))) >= 2]
    chosen = multi[:: max(1, len(multi) // args.identities)][: args.identities]
    crops, names = [], []
    for person in chosen:
        for photo in sorted(person.glob("*.jpg"))[:2]:
            r = pipe.analyse(load_image(photo), gates=False, embed=False)
            if r.crop is not None:
                crops.append(r.crop)
                names.append(f"{person.name}/{photo.name}")
    np.savez_compressed(args.out, crops=np.stack(crops), names=np.array(names))
    print(f"{len(crops)} aligned crops of {len(chosen)} identities -> {args.out}")
    return 0


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64).reshape(len(v), -1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = np.sum(_unit(a) * _unit(b), axis=1)
    return {
        "mean": round(float(cos.mean()), 6),
        "p01": round(float(np.percentile(cos, 1)), 6),
        "min": round(float(cos.min()), 6),
    }


def cmd_compare(args: argparse.Namespace) -> int:
    import tensorflow as tf
    import torch

    from tools import convert_edgeface as ce

    z = np.load(args.crops)
    crops = z["crops"].astype(np.float32)
    x = (crops - MEAN) / STD  # NHWC RGB, as edge.infer.embedder feeds it
    tanh_net = ce.build_torch_model(args.src)
    exact_net = ce.build_torch_model(args.src)
    for module in exact_net.modules():
        if isinstance(module, torch.nn.GELU):
            module.approximate = "none"
    with torch.no_grad():
        nchw = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        # one at a time: the frozen positional encoding is for a batch of 1
        ref_tanh = np.concatenate([tanh_net(t[None]).numpy() for t in nchw])
        ref_exact = np.concatenate([exact_net(t[None]).numpy() for t in nchw])

    def tflite(path: Path) -> np.ndarray:
        interp = tf.lite.Interpreter(model_path=str(path), num_threads=1)
        runner = interp.get_signature_runner()
        (name,) = runner.get_input_details()
        return np.concatenate([next(iter(runner(**{name: xi[None]}).values())) for xi in x])

    fp32 = tflite(args.fp32)
    out: dict[str, Any] = {
        "crops": len(x),
        "crops_from": "faces-dev, 2 photos each of an even spread of identities; project "
        "YuNet detection + 5-point alignment (tools/check_edgeface_conversion.py crops)",
        "cosine": {
            "tanh_gelu_vs_exact_gelu_torch": _stats(ref_tanh, ref_exact),
            "fp32_tflite_vs_torch_tanh": _stats(fp32, ref_tanh),
            "fp32_tflite_vs_torch_exact": _stats(fp32, ref_exact),
        },
        "versions": {"torch": torch.__version__, "tensorflow": tf.__version__},
        "files": {"fp32": {"file": args.fp32.name, "sha256": ce.sha256_file(args.fp32)}},
    }
    if args.int8 is not None:
        int8 = tflite(args.int8)
        out["cosine"]["int8dr_tflite_vs_torch_exact"] = _stats(int8, ref_exact)
        out["cosine"]["int8dr_vs_fp32_tflite"] = _stats(int8, fp32)
        out["files"]["int8dr"] = {"file": args.int8.name, "sha256": ce.sha256_file(args.int8)}
    # same person closer than different people, in the shipped file
    u = _unit(fp32)
    names = [str(n).split("/")[0] for n in z["names"]]
    sims = u @ u.T
    same = [sims[i, j] for i in range(len(u)) for j in range(i + 1, len(u)) if names[i] == names[j]]
    diff = [sims[i, j] for i in range(len(u)) for j in range(i + 1, len(u)) if names[i] != names[j]]
    out["fp32_same_vs_different"] = {
        "same_mean": round(float(np.mean(same)), 4),
        "different_mean": round(float(np.mean(diff)), 4),
        "different_max": round(float(np.max(diff)), 4),
    }
    ok = out["cosine"]["fp32_tflite_vs_torch_exact"]["min"] >= args.min_cosine
    out["pass"] = bool(ok)
    merge_report("agreement", out)
    return 0 if ok else 1


def cmd_time(args: argparse.Namespace) -> int:
    from edge.infer.embedder import FaceEmbedder
    from edge.infer.manifest import load_manifest, sha256_bytes
    from edge.infer.runtime import TFLiteModel

    crops = np.load(args.crops)["crops"][: args.n]
    m = load_manifest()
    sface = m.embedder_named("sface")
    edge_xs = m.embedder_named("edgeface_xs")
    files: dict[str, tuple[Path, str, dict[str, Any]]] = {
        "sface_int8dr (shipped)": (sface.path, sface.sha256, sface.extra),
        "edgeface_xs_fp32": (edge_xs.path, edge_xs.sha256, edge_xs.extra),
    }
    if args.int8 is not None:
        files["edgeface_xs_int8dr"] = (
            args.int8,
            sha256_bytes(args.int8.read_bytes()),
            edge_xs.extra,
        )
    result: dict[str, Any] = {
        "crops": len(crops),
        "rounds": args.rounds,
        "threads": 1,
        "how": "median ms per embed() over crops x rounds, models interleaved per round "
        "in one process; ratio = ms / SFace's ms under the same runtime",
    }
    for runtime in ("litert", "tflite_runtime"):
        embedders = {
            k: FaceEmbedder.from_entry(TFLiteModel(p, s, runtime, 1), extra)
            for k, (p, s, extra) in files.items()
        }
        times: dict[str, list[float]] = {k: [] for k in embedders}
        for e in embedders.values():  # warm-up
            e.embed(crops[0])
        for _ in range(args.rounds):
            for k, e in embedders.items():
                for c in crops:
                    t0 = time.perf_counter()
                    e.embed(c)
                    times[k].append((time.perf_counter() - t0) * 1000)
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["sface_int8dr (shipped)"]
        result[runtime] = {
            k: {"ms": round(v, 2), "ratio_to_sface": round(v / base, 3)} for k, v in med.items()
        }
    merge_report("timing", result)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crops")
    c.add_argument("--faces", type=Path, default=DEFAULT_FACES)
    c.add_argument("--identities", type=int, default=40)
    c.add_argument("--out", type=Path, required=True)
    k = sub.add_parser("compare")
    k.add_argument("--crops", type=Path, required=True)
    k.add_argument("--src", type=Path, default=Path("/work/shared/models/edgeface"))
    k.add_argument("--fp32", type=Path, default=MODELS / "edgeface_xs.tflite")
    k.add_argument("--int8", type=Path, default=None)
    k.add_argument("--min-cosine", type=float, default=0.999)
    t = sub.add_parser("time")
    t.add_argument("--crops", type=Path, required=True)
    t.add_argument("--int8", type=Path, default=None)
    t.add_argument("--n", type=int, default=20)
    t.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    return {"crops": cmd_crops, "compare": cmd_compare, "time": cmd_time}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
