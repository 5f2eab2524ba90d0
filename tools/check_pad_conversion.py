"""Check the converted MiniFASNet .tflite files against the original PyTorch weights.

Build-time only, in the conversion venv (tools/requirements-convert-pad.txt). On real face
crops (the 3 upstream sample photos plus an even spread of pad-dev photos of both classes)
it compares, per model and fused (mean of the two softmaxes, index 1 = "real"):
  torch      the .pth in PyTorch (upstream network, NCHW, as anti_spoof_predict.py runs it)
  onnx       our intermediate ONNX in onnxruntime (only with --onnx-dir)
  ours_tf    our .tflite under TensorFlow 2.15's tf.lite.Interpreter
  ref_tf     the third-party reference .tflite (README: feni-katharotiya/...-TFLite)
  dr_tf      the int8 dynamic-range variants (only with --variants-dir; not shipped)
  ours_tflite_runtime / ours_litert (and dr_*): the same files under tflite-runtime 2.14 and
             ai-edge-litert, run by --runtime-python (the project's venv; read-only use)
Crops: upstream's CropImage (src/generate_patches.py, imported from --src): the face box
enlarged by the model's scale around its centre, clamped to the frame, cv2.resize to 80x80.
Face boxes: our YuNet detector (edge.infer.detector + edge.infer.yunet.pick_subject, the
.tflite run by tf.lite.Interpreter); a central box if YuNet finds no face (counted).
Also measured: the same crops resized with PIL bilinear instead of cv2 (what a PIL-based
loader would feed) and with a numpy cv2-like bilinear; single-thread invoke time per file
and runtime; and how the fused decision moves when the YuNet box is scaled by 0.9..1.3
before cropping (upstream used a RetinaFace box, whose extent differs from YuNet's).

Usage (writes tools/pad_conversion_check.json):
  /work/convert-venv/bin/python tools/check_pad_conversion.py \
      --variants-dir /tmp/pad-variants --onnx-dir /tmp/pad-work
The --runtimes mode is the helper run under --runtime-python (numpy + runtimes only).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = Path("/work/shared/models/minifasnet")
DEFAULT_DATA = Path("/work/shared/data/pad-dev")
DEFAULT_RUNTIME_PY = Path("/work/main/.venv/bin/python")
REF_FILES = {
    "pad_v2": "reference/2.7_80x80_MiniFASNetV2.tflite",
    "pad_v1se": "reference/4_0_0_80x80_MiniFASNetV1SE.tflite",
}
RUNTIME_MODULES = {
    "tflite_runtime": "tflite_runtime.interpreter",
    "litert": "ai_edge_litert.interpreter",
}
TIMING_RUNS = 200
BOX_FACTORS = (0.9, 1.0, 1.1, 1.2, 1.3)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def tflite_runner(interpreter_cls: Any, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Single input, single output; works with or without a signature."""
    interp = interpreter_cls(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    i_idx = interp.get_input_details()[0]["index"]
    o_idx = interp.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interp.set_tensor(i_idx, np.ascontiguousarray(x, np.float32))
        interp.invoke()
        return np.array(interp.get_tensor(o_idx)).reshape(-1)

    return run


def io_details(interpreter_cls: Any, path: Path) -> dict[str, Any]:
    interp = interpreter_cls(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    sig = interp.get_signature_list()
    out: dict[str, Any] = {
        "tensors_in": [
            (d["name"], [int(s) for s in d["shape"]], str(np.dtype(d["dtype"])))
            for d in interp.get_input_details()
        ],
        "tensors_out": [
            (d["name"], [int(s) for s in d["shape"]], str(np.dtype(d["dtype"])))
            for d in interp.get_output_details()
        ],
        "signatures": {k: v for k, v in sig.items()},
    }
    if sig:
        runner = interp.get_signature_runner(next(iter(sig)))
        out["signature_inputs"] = {
            k: [int(s) for s in v["shape"]] for k, v in runner.get_input_details().items()
        }
        out["signature_outputs"] = {
            k: [int(s) for s in v["shape"]] for k, v in runner.get_output_details().items()
        }
    return out


def time_runner(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> float:
    for _ in range(10):
        run(x)
    t0 = time.perf_counter()
    for _ in range(TIMING_RUNS):
        run(x)
    return (time.perf_counter() - t0) / TIMING_RUNS * 1e3


def runtimes_mode(npz: Path, files_json: str) -> int:
    """Helper run under the project's venv: logits and timings for each runtime and file."""
    import importlib

    data = np.load(npz)
    files: dict[str, dict[str, str]] = json.loads(files_json)  # label -> {role: path}
    result: dict[str, Any] = {"versions": {}, "logits": {}, "ms": {}, "io": {}, "errors": {}}
    for rt, modname in RUNTIME_MODULES.items():
        try:
            mod = importlib.import_module(modname)
        except ImportError as exc:
            result["errors"][rt] = f"import: {exc}"
            continue
        top = importlib.import_module(modname.split(".")[0])
        result["versions"][rt] = getattr(top, "__version__", "?")
        for label, roles in files.items():
            for role, path in roles.items():
                key = f"{label}_{rt}"
                try:
                    run = tflite_runner(mod.Interpreter, Path(path))
                    if label == "ours":
                        result["io"].setdefault(rt, {})[role] = io_details(
                            mod.Interpreter, Path(path)
                        )
                except (ValueError, RuntimeError) as exc:
                    result["errors"][f"{key}/{role}"] = str(exc)
                    continue
                crops = data[role]
                result["logits"].setdefault(key, {})[role] = [run(c[None]).tolist() for c in crops]
                result["ms"].setdefault(key, {})[role] = time_runner(run, crops[0][None])
    print(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------
# conversion-venv side


def _load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _TFModel:
    """Duck-typed stand-in for edge.infer.runtime.TFLiteModel on tf.lite.Interpreter."""

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self._interp = tf.lite.Interpreter(model_path=str(path), num_threads=1)
        self._interp.allocate_tensors()
        runner = self._interp.get_signature_runner()
        self._in = {k: v["index"] for k, v in runner.get_input_details().items()}
        self._out = {k: v["index"] for k, v in runner.get_output_details().items()}
        self._shape = {
            v["index"]: tuple(int(s) for s in v["shape"])
            for v in runner.get_input_details().values()
        }

    @property
    def input_names(self) -> list[str]:
        return list(self._in)

    def input_shape(self, name: str) -> tuple[int, ...]:
        return self._shape[self._in[name]]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for k, v in feeds.items():
            self._interp.set_tensor(self._in[k], np.ascontiguousarray(v, np.float32))
        self._interp.invoke()
        return {k: np.array(self._interp.get_tensor(i)) for k, i in self._out.items()}


def pick_images(src: Path, data: Path, per_class: int) -> list[tuple[str, str, Path]]:
    """(label, class, path): upstream samples, then an even spread of each pad-dev class."""
    out = [
        ("samples/image_F1.jpg", "attack", src / "samples/image_F1.jpg"),
        ("samples/image_F2.jpg", "attack", src / "samples/image_F2.jpg"),
        ("samples/image_T1.jpg", "bona-fide", src / "samples/image_T1.jpg"),
    ]
    for cls in ("bona-fide", "attack"):
        files = sorted((data / cls).glob("*/*.jpg"))
        if not files:
            raise SystemExit(f"no photos in {data / cls}")
        idx = np.unique(np.linspace(0, len(files) - 1, per_class).round().astype(int))
        out += [
            (f"pad-dev/{cls}/{files[i].parent.name}/{files[i].name}", cls, files[i]) for i in idx
        ]
    return out


def resize_bilinear_cv2like(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Numpy bilinear resize with cv2.INTER_LINEAR's sampling (half-pixel centres, edge
    clamp, no antialiasing), float weights, rounded to uint8: what a loader without OpenCV
    can use to feed what upstream fed (measured against cv2 below)."""

    def coords(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        i0 = np.floor(f).astype(int)
        w = f - i0
        w[i0 < 0] = 0.0
        i0 = np.clip(i0, 0, n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, w

    h, w_ = img.shape[:2]
    y0, y1, wy = coords(h, out_h)
    x0, x1, wx = coords(w_, out_w)
    a = img.astype(np.float64)
    rows = a[y0] * (1 - wy)[:, None, None] + a[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def pair_stats(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Max |diff| of logits and real prob per role, and of the fused real prob."""
    out: dict[str, float] = {}
    for role in a:
        out[f"{role}_logits"] = float(np.abs(a[role] - b[role]).max())
        out[f"{role}_real"] = float(np.abs(softmax(a[role])[:, 1] - softmax(b[role])[:, 1]).max())
    out["fused_real"] = float(np.abs(fused(a) - fused(b)).max())
    out["decisions_differ_at_0.5"] = int(((fused(a) >= 0.5) != (fused(b) >= 0.5)).sum())
    return out


def bona_mask(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([r["class"] == "bona-fide" for r in rows])


def fused(logits: dict[str, np.ndarray]) -> np.ndarray:
    return np.mean([softmax(v) for v in logits.values()], axis=0)[:, 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtimes", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--files", help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--models", type=Path, default=ROOT / "edge/infer/models")
    ap.add_argument("--per-class", type=int, default=25, help="pad-dev photos per class")
    ap.add_argument("--variants-dir", type=Path, help="int8 DR variants from convert_pad.py")
    ap.add_argument("--onnx-dir", type=Path, help="convert_pad.py --work folder (ONNX files)")
    ap.add_argument("--runtime-python", type=Path, default=DEFAULT_RUNTIME_PY)
    ap.add_argument("--out", type=Path, default=ROOT / "tools/pad_conversion_check.json")
    args = ap.parse_args()
    if args.runtimes:
        return runtimes_mode(args.runtimes, args.files)

    import cv2
    import tensorflow as tf
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from edge.infer.detector import FaceDetector
    from edge.infer.yunet import pick_subject

    conv = _load_module("convert_pad", ROOT / "tools/convert_pad.py")
    crop_mod = _load_module("minifasnet_generate_patches", args.src / "src/generate_patches.py")
    cropper = crop_mod.CropImage()
    torch.set_num_threads(1)

    manifest = json.loads((args.models / "models.json").read_text())["models"]
    roles = list(conv.MODELS)
    ours = {r: args.models / manifest[r]["file"] for r in roles}
    for r in roles:
        got = conv.sha256_file(ours[r])
        if got != manifest[r]["sha256"]:
            raise SystemExit(f"{ours[r]}: sha256 {got} != models.json")
    det_entry = manifest["detector"]
    detector = FaceDetector(cast(Any, _TFModel(args.models / det_entry["file"])))

    # crops ------------------------------------------------------------------------------
    images = pick_images(args.src, args.data, args.per_class)
    crops: dict[str, list[np.ndarray]] = {r: [] for r in roles}
    crops_pil: dict[str, list[np.ndarray]] = {r: [] for r in roles}
    crops_np: dict[str, list[np.ndarray]] = {r: [] for r in roles}
    rows: list[dict[str, Any]] = []
    no_face = 0
    for label, cls, path in images:
        bgr = cv2.imread(str(path))
        h, w = bgr.shape[:2]
        face = pick_subject(detector.detect(np.ascontiguousarray(bgr[:, :, ::-1])), (h, w))
        if face is None:
            no_face += 1
            side = min(h, w) // 2
            bbox = [(w - side) // 2, (h - side) // 2, side, side]
        else:
            x, y, bw, bh = face.box
            bbox = [int(x), int(y), round(bw), round(bh)]
        rows.append({"image": label, "class": cls, "bbox_xywh": bbox, "yunet": face is not None})
        for r in roles:
            scale = manifest[r]["scale"]
            ih, iw = manifest[r]["input_size"]
            crops[r].append(cropper.crop(bgr, bbox, scale, iw, ih, crop=True))
            x1, y1, x2, y2 = cropper._get_new_box(w, h, bbox, scale)
            patch = Image.fromarray(np.ascontiguousarray(bgr[y1 : y2 + 1, x1 : x2 + 1]))
            crops_pil[r].append(np.asarray(patch.resize((iw, ih), Image.Resampling.BILINEAR)))
            crops_np[r].append(resize_bilinear_cv2like(bgr[y1 : y2 + 1, x1 : x2 + 1], iw, ih))
    batch = {r: np.stack(crops[r]).astype(np.float32) for r in roles}
    batch_pil = {r: np.stack(crops_pil[r]).astype(np.float32) for r in roles}
    batch_np = {r: np.stack(crops_np[r]).astype(np.float32) for r in roles}
    pixel_diff = {
        "numpy_cv2like_vs_cv2_max_abs": float(
            max(np.abs(batch_np[r] - batch[r]).max() for r in roles)
        ),
        "pil_bilinear_vs_cv2_max_abs": float(
            max(np.abs(batch_pil[r] - batch[r]).max() for r in roles)
        ),
    }

    # conversion-venv runs ----------------------------------------------------------------
    logits: dict[str, dict[str, np.ndarray]] = {}
    ms: dict[str, dict[str, float]] = {}
    logits["torch"] = {}
    for r in roles:
        net = conv.build_torch_model(args.src, r)
        with torch.no_grad():  # upstream: ToTensor (HWC->CHW, no /255), float, NCHW
            xs = torch.from_numpy(batch[r].transpose(0, 3, 1, 2).copy())
            logits["torch"][r] = np.concatenate(
                [net(xs[i : i + 1]).numpy() for i in range(len(xs))]
            )
    if args.onnx_dir:
        import onnxruntime as ort

        logits["onnx"] = {}
        for r in roles:
            sess = ort.InferenceSession(
                str(args.onnx_dir / f"{r}.onnx"), providers=["CPUExecutionProvider"]
            )
            logits["onnx"][r] = np.concatenate(
                [sess.run(None, {conv.INPUT_NAME: b[None]})[0] for b in batch[r]]
            )
    tf_files = {"ours_tf": ours, "ref_tf": {r: args.src / REF_FILES[r] for r in roles}}
    if args.variants_dir:
        tf_files["dr_tf"] = {r: args.variants_dir / conv.MODELS[r]["dr_file"] for r in roles}
    for key, files in tf_files.items():
        logits[key], ms[key] = {}, {}
        for r in roles:
            run = tflite_runner(tf.lite.Interpreter, files[r])
            logits[key][r] = np.stack([run(b[None]) for b in batch[r]])
            ms[key][r] = time_runner(run, batch[r][:1])
    pil_ours = {
        r: np.stack([tflite_runner(tf.lite.Interpreter, ours[r])(b[None]) for b in batch_pil[r]])
        for r in roles
    }
    np_ours = {
        r: np.stack([tflite_runner(tf.lite.Interpreter, ours[r])(b[None]) for b in batch_np[r]])
        for r in roles
    }

    box_sensitivity: dict[str, dict[str, int]] = {}
    runners = {r: tflite_runner(tf.lite.Interpreter, ours[r]) for r in roles}
    frames = [cv2.imread(str(p)) for _, _, p in images]
    for f in BOX_FACTORS:
        lg: dict[str, list[np.ndarray]] = {r: [] for r in roles}
        for bgr, row in zip(frames, rows, strict=True):
            x, y, bw, bh = row["bbox_xywh"]
            cx, cy = x + bw / 2, y + bh / 2
            fb = [int(cx - bw * f / 2), int(cy - bh * f / 2), round(bw * f), round(bh * f)]
            for r in roles:
                ih, iw = manifest[r]["input_size"]
                c = cropper.crop(bgr, fb, manifest[r]["scale"], iw, ih, crop=True)
                lg[r].append(runners[r](c[None].astype(np.float32)))
        fr = fused({r: np.stack(v) for r, v in lg.items()})
        box_sensitivity[f"{f:.1f}"] = {
            "bona_fide_called_real": int((fr[bona_mask(rows)] >= 0.5).sum()),
            "attack_called_real": int((fr[~bona_mask(rows)] >= 0.5).sum()),
        }

    # project-venv runtimes ---------------------------------------------------------------
    runtime_info: dict[str, Any] = {}
    if args.runtime_python.exists():
        with tempfile.TemporaryDirectory(prefix="pad-check-") as tmp:
            npz = Path(tmp) / "crops.npz"
            np.savez(npz, **batch)
            files = {"ours": {r: str(ours[r]) for r in roles}}
            if args.variants_dir:
                files["dr"] = {r: str(tf_files["dr_tf"][r]) for r in roles}
            proc = subprocess.run(
                [
                    str(args.runtime_python),
                    str(Path(__file__).resolve()),
                    "--runtimes",
                    str(npz),
                    "--files",
                    json.dumps(files),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        runtime_info = json.loads(proc.stdout.strip().splitlines()[-1])
        for key, per_role in runtime_info["logits"].items():
            logits[key] = {r: np.asarray(v, np.float32) for r, v in per_role.items()}
        ms.update(runtime_info["ms"])
    else:
        runtime_info = {"errors": {"all": f"{args.runtime_python} not found"}}

    # figures -----------------------------------------------------------------------------
    comparisons: dict[str, dict[str, Any]] = {}
    for key in logits:
        if key != "torch" and set(logits[key]) == set(roles):
            comparisons[f"{key}_vs_torch"] = pair_stats(logits[key], logits["torch"])
    comparisons["ours_tf_vs_ref_tf"] = pair_stats(logits["ours_tf"], logits["ref_tf"])
    for rt in RUNTIME_MODULES:
        if f"ours_{rt}" in logits:
            comparisons[f"ours_{rt}_vs_ours_tf"] = pair_stats(
                logits[f"ours_{rt}"], logits["ours_tf"]
            )
    if "ours_tflite_runtime" in logits and "ours_litert" in logits:
        comparisons["ours_tflite_runtime_vs_ours_litert"] = pair_stats(
            logits["ours_tflite_runtime"], logits["ours_litert"]
        )
    comparisons["pil_resize_vs_cv2_resize_ours_tf"] = pair_stats(pil_ours, logits["ours_tf"])
    comparisons["numpy_cv2like_resize_vs_cv2_resize_ours_tf"] = pair_stats(
        np_ours, logits["ours_tf"]
    )

    torch_fused = fused(logits["torch"])
    for i, row in enumerate(rows):
        row["fused_real_torch"] = round(float(torch_fused[i]), 6)
        row["fused_real_ours_tf"] = round(float(fused(logits["ours_tf"])[i]), 6)
        row["fused_real_ref_tf"] = round(float(fused(logits["ref_tf"])[i]), 6)
    bona = bona_mask(rows)
    report = {
        "what": "MiniFASNet conversion check: max |difference| over all crops "
        "(logits; softmax[1] 'real' per model; fused = mean of the two softmaxes, index 1)",
        "crops": {
            "images": len(rows),
            "bona_fide": int(bona.sum()),
            "attack": int((~bona).sum()),
            "face_boxes": "YuNet (edge.infer.detector, tf.lite.Interpreter), pick_subject",
            "no_face_central_box": no_face,
            "crop": "upstream CropImage (scale around box centre, clamped, cv2.resize 80x80)",
            "resize_pixel_diff": pixel_diff,
        },
        "versions": {
            "torch": torch.__version__,
            "tensorflow": tf.__version__,
            "opencv": cv2.__version__,
            **{k: v for k, v in runtime_info.get("versions", {}).items()},
        },
        "files": {r: {"file": manifest[r]["file"], "sha256": manifest[r]["sha256"]} for r in roles},
        "comparisons": comparisons,
        "ms_per_invoke_1_thread": {
            k: {r: round(v, 3) for r, v in d.items()} for k, d in ms.items()
        },
        "runtime_errors": runtime_info.get("errors", {}),
        "io_as_reported": {
            "tensorflow": {r: io_details(tf.lite.Interpreter, ours[r]) for r in roles},
            **runtime_info.get("io", {}),
        },
        "upstream_decision_at_0.5_torch": {
            "bona_fide_called_real": int((torch_fused[bona] >= 0.5).sum()),
            "attack_called_real": int((torch_fused[~bona] >= 0.5).sum()),
            "note": "sanity check of crop/scale/order only, NOT an APCER/BPCER measurement",
        },
        "box_factor_sensitivity_ours_tf_at_0.5": box_sensitivity,
        "per_image": rows,
    }
    if args.variants_dir:
        report["files"].update(
            {
                f"{r}_int8dr": {
                    "file": conv.MODELS[r]["dr_file"],
                    "sha256": conv.sha256_file(tf_files["dr_tf"][r]),
                }
                for r in roles
            }
        )
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {
                "comparisons": comparisons,
                "ms": report["ms_per_invoke_1_thread"],
                "errors": report["runtime_errors"],
                "crops": report["crops"],
                "decision": report["upstream_decision_at_0.5_torch"],
                "box": box_sensitivity,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
