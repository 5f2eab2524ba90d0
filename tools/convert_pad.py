"""Rebuild the presentation-attack (liveness) models edge/infer/models/minifasnet_*.tflite.

Build-time only: run it in its own venv (tools/requirements-convert-pad.txt: PyTorch 2.13
CPU + TensorFlow 2.15.1 + onnx2tf), never on a kiosk. Why TensorFlow 2.15: a model written
by TF >= 2.16 uses op versions that tflite-runtime 2.14, the Pi's runtime, cannot load.

Source: the original PyTorch weights of minivision-ai/Silent-Face-Anti-Spoofing (Apache-2.0)
at commit b6d5f04ad78778917853b25c778acef6d5626d15, as laid out in --src
(default /work/shared/models/minifasnet; see its README.md):
  2.7_80x80_MiniFASNetV2.pth, 4_0_0_80x80_MiniFASNetV1SE.pth, src/model_lib/MiniFASNet.py,
  src/utility.py.

Steps, all deterministic:
1. check the sha256 of both .pth files;
2. build each network from the upstream MiniFASNet.py (model type, input size and
   conv6 kernel parsed from the file name with upstream's own utility.py, exactly as
   anti_spoof_predict.py does), load the weights (DataParallel `module.` prefixes stripped
   as upstream does), eval mode;
3. wrap it so the graph takes NHWC float32 1x80x80x3 BGR 0..255 (the NHWC->NCHW transpose
   is inside the graph; no normalisation, as upstream) and returns the 3 raw logits
   (softmax stays in our code; index 1 = "real");
4. torch.onnx.export (TorchScript exporter, dynamo=False, opset 13), input "input",
   output "logits"; checked against PyTorch with onnxruntime;
5. onnx2tf -> SavedModel, keeping the input NHWC; TFLiteConverter float32 (TF 2.15.1);
6. write the .tflite files and merge the roles pad_v2 / pad_v1se into models.json
   (the other entries are left as they are).

Usage: /work/convert-venv/bin/python -m tools.convert_pad [--src DIR] [--variants-dir DIR]
  --variants-dir also writes the int8 dynamic-range variants there (measured by
  tools/check_pad_conversion.py, not shipped: see MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tools.convert_models import io_spec, onnx_to_saved_model, sha256_file, to_tflite

UPSTREAM_REPO = "minivision-ai/Silent-Face-Anti-Spoofing"
UPSTREAM_COMMIT = "b6d5f04ad78778917853b25c778acef6d5626d15"
LICENCE = "Apache-2.0 (minivision-ai/Silent-Face-Anti-Spoofing)"
DEFAULT_SRC = Path("/work/shared/models/minifasnet")
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 13
REAL_INDEX = 1

# role -> source weights and output file; scale/size/type are re-derived from the file name
MODELS: dict[str, dict[str, Any]] = {
    "pad_v2": {
        "pth": "2.7_80x80_MiniFASNetV2.pth",
        "sha256": "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0",
        "file": "minifasnet_v2_2.7_80.tflite",
        "dr_file": "minifasnet_v2_2.7_80_int8dr.tflite",
        "scale": 2.7,
    },
    "pad_v1se": {
        "pth": "4_0_0_80x80_MiniFASNetV1SE.pth",
        "sha256": "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990",
        "file": "minifasnet_v1se_4.0_80.tflite",
        "dr_file": "minifasnet_v1se_4.0_80_int8dr.tflite",
        "scale": 4.0,
    },
}


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_sources(src: Path) -> None:
    for role, m in MODELS.items():
        path = src / m["pth"]
        got = sha256_file(path)
        if got != m["sha256"]:
            raise SystemExit(f"{path}: sha256 {got} != expected {m['sha256']} ({role})")


def model_info(src: Path, role: str) -> dict[str, Any]:
    """Input size, model type, scale and conv6 kernel as upstream derives them."""
    utility = _load_module("minifasnet_utility", src / "src/utility.py")
    pth = MODELS[role]["pth"]
    h, w, model_type, scale = utility.parse_model_name(pth)
    if scale != MODELS[role]["scale"]:
        raise SystemExit(f"{pth}: scale {scale} != {MODELS[role]['scale']}")
    return {
        "h": h,
        "w": w,
        "model_type": model_type,
        "scale": scale,
        "kernel": utility.get_kernel(h, w),
    }


def build_torch_model(src: Path, role: str):  # -> torch.nn.Module (NCHW, upstream layout)
    """The upstream network with the .pth weights, in eval mode (as anti_spoof_predict.py)."""
    import torch

    lib = _load_module("minifasnet_model_lib", src / "src/model_lib/MiniFASNet.py")
    info = model_info(src, role)
    net = getattr(lib, info["model_type"])(conv6_kernel=info["kernel"])
    state = torch.load(src / MODELS[role]["pth"], map_location="cpu", weights_only=True)
    if next(iter(state)).find("module.") >= 0:  # DataParallel checkpoint: strip 'module.'
        state = collections.OrderedDict((k[7:], v) for k, v in state.items())
    net.load_state_dict(state)
    net.eval()
    return net


def nhwc_wrapper(net):  # -> torch.nn.Module
    import torch

    class NHWCLogits(torch.nn.Module):
        """NHWC float32 BGR 0..255 in, the 3 raw logits out (no softmax)."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.permute(0, 3, 1, 2))

    return NHWCLogits(net).eval()


def export_onnx(src: Path, role: str, dst: Path) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    info = model_info(src, role)
    model = nhwc_wrapper(build_torch_model(src, role))
    x = torch.from_numpy(
        np.random.default_rng(0).uniform(0, 255, (1, info["h"], info["w"], 3)).astype(np.float32)
    )
    with torch.no_grad():
        torch.onnx.export(
            model,
            (x,),
            str(dst),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
        want = model(x).numpy()
    onnx.checker.check_model(onnx.load(str(dst)))
    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    diff = float(np.abs(got - want).max())
    if diff > 1e-3:
        raise SystemExit(f"{dst}: ONNX differs from PyTorch by {diff}")
    print(f"{role}: ONNX vs PyTorch max |logit diff| {diff:.2e}", flush=True)


def manifest_entry(src: Path, role: str, path: Path) -> dict[str, Any]:
    m = MODELS[role]
    info = model_info(src, role)
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        **io_spec(path),
        "quantisation": "fp32",
        "source": f"{info['model_type']} {m['pth'].rsplit('_', 1)[0]} "
        f"({UPSTREAM_REPO} @ {UPSTREAM_COMMIT})",
        "source_file": m["pth"],
        "source_sha256": m["sha256"],
        "licence": LICENCE,
        "variants": {},
        "scale": float(info["scale"]),
        "input_size": [info["h"], info["w"]],
        "channel_order": "BGR",
        "real_index": REAL_INDEX,
    }


def merge_manifest(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Add/replace only our roles; every other key of models.json stays as it was."""
    manifest: dict[str, Any] = (
        json.loads(path.read_text()) if path.exists() else {"format": 1, "models": {}}
    )
    manifest.setdefault("models", {}).update(entries)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC, help="upstream files (README there)")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "edge/infer/models"
    )
    ap.add_argument("--work", type=Path, help="scratch folder, kept (default: a temp dir)")
    ap.add_argument(
        "--variants-dir", type=Path, help="also write the int8 dynamic-range variants here"
    )
    ap.add_argument("--no-manifest", action="store_true", help="do not touch models.json")
    args = ap.parse_args()

    check_sources(args.src)
    work = args.work or Path(tempfile.mkdtemp(prefix="convert-pad-"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.variants_dir:
        args.variants_dir.mkdir(parents=True, exist_ok=True)

    import tensorflow as tf
    import torch

    if not tf.__version__.startswith("2.15."):
        raise SystemExit(f"TensorFlow {tf.__version__}: need 2.15.x (tflite-runtime 2.14)")
    entries: dict[str, dict[str, Any]] = {}
    for role, m in MODELS.items():
        onnx_path = work / f"{role}.onnx"
        export_onnx(args.src, role, onnx_path)
        sm = work / f"{role}_saved_model"
        shutil.rmtree(sm, ignore_errors=True)
        onnx_to_saved_model(onnx_path, sm, keep_nhwc_inputs=[INPUT_NAME])  # already NHWC
        dst = args.out / m["file"]
        to_tflite(sm, dst, "fp32")
        entries[role] = manifest_entry(args.src, role, dst)
        print(f"{role} fp32: {dst} {entries[role]['bytes']} B sha256 {entries[role]['sha256']}")
        if args.variants_dir:
            dr = args.variants_dir / m["dr_file"]
            to_tflite(sm, dr, "dynamic")
            print(f"{role} dynamic (not shipped): {dr} {dr.stat().st_size} B {sha256_file(dr)}")
    if not args.no_manifest:
        merge_manifest(args.out / "models.json", entries)
        print(f"merged {', '.join(entries)} into {args.out / 'models.json'}")
    print(f"torch {torch.__version__}, tensorflow {tf.__version__}", flush=True)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
