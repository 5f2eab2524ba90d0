"""Build the EdgeFace-XS face embedder (edge/infer/models/edgeface_xs.tflite) from Idiap's weights.

Build-time only: run it in its own venv (tools/requirements-convert-edgeface.txt: PyTorch 2.13
CPU + timm + TensorFlow 2.15.1 + onnx2tf), never on a kiosk. Why TensorFlow 2.15: a model
written by TF >= 2.16 uses op versions that tflite-runtime 2.14, the Pi's runtime, cannot load.

Source: EdgeFace-XS (George et al., IEEE T-BIOM 2024; BSD-3-Clause code and weights), the
quantised checkpoint `edgeface_xs_q.pt` as committed by its author to
yayoimizuha/face_recognition_train @ 3e631e35bf207a09aa2af79239961cfb14248c0a, laid out in
--src (default /work/shared/models/edgeface; see its README.md): edgeface_xs_q.pt and
backbones/{__init__,timmfr}.py.

Steps, all deterministic:
1. check the sha256 of the checkpoint and of upstream's timmfr.py;
2. build the float network with upstream's own get_timmfrv2('edgenext_x_small') (timm),
   de-quantise the checkpoint's dynamic-int8 Linear weights (w = (q - zero_point) * scale)
   into it, load strictly, eval mode;
3. replace exact GELU by its tanh approximation: exact GELU becomes an Erf op that TFLite
   only has as a Flex (TensorFlow) op, which neither tflite_runtime nor LiteRT runs;
4. the Fourier positional encoding is frozen to its value for the 112x112 input (a
   constant for one size, which onnx2tf cannot convert as ops);
5. torch.onnx.export of the NCHW network (TorchScript exporter, dynamo=False, opset 13),
   checked against PyTorch with onnxruntime; onnx2tf -> SavedModel, which takes NHWC
   float32 1x112x112x3 RGB already normalised ((px / 255 - 0.5) / 0.5, done by
   edge.infer.embedder from the manifest's mean/std) and returns the raw 512-d embedding
   (L2 normalisation stays in our code); TFLiteConverter (TF 2.15) float32 (shipped)
   and dynamic-range int8 (measured, see MODEL_CARD.md);
6. merge the role `embedder_edgeface_xs` into models.json (other entries untouched).

The agreement check on real aligned faces is tools/check_edgeface_conversion.py.

timm imports torchvision at module level (for classes EdgeNeXt never uses), and PyPI has no
CPU torchvision for torch 2.13+cpu (its wheel is linked against CUDA torch). If torchvision
cannot be imported, a stub that refuses every use is put in its place for the build only
(_TorchvisionStub below); the network then is pure timm/torch, and step 5 plus the
check script prove its outputs.

Usage: /work/convert-venv/bin/python -m tools.convert_edgeface [--src DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np

from tools.convert_models import CALIB_NPY, io_spec, sha256_file, to_tflite

UPSTREAM_REPO = "yayoimizuha/face_recognition_train"
UPSTREAM_COMMIT = "3e631e35bf207a09aa2af79239961cfb14248c0a"
LICENCE = "BSD-3-Clause (Idiap Research Institute, EdgeFace); training data WebFace12M: academic research only"
DEFAULT_SRC = Path("/work/shared/models/edgeface")
CHECKPOINT = "edgeface_xs_q.pt"
CHECKPOINT_SHA256 = "a31314377876ab9fa2a75e5638bc528efe79fd17d5c9c0a228fb7f846d7581a6"
TIMM_ARCH = "edgenext_x_small"
ROLE = "embedder_edgeface_xs"
# not *_fp32.tflite: pyproject leaves those (float references) out of the wheel
FILES = {"fp32": "edgeface_xs.tflite", "dynamic": "edgeface_xs_int8dr.tflite"}
SHIPPED = "fp32"  # dynamic-range int8 is slower and no more accurate (MODEL_CARD.md)
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
OPSET = 13
SIZE = 112
DIM = 512
MEAN = 127.5  # (px / 255 - 0.5) / 0.5 == (px - 127.5) / 127.5
STD = 127.5


class _Refused(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(name)


def _refuse(*_a: Any, **_k: Any) -> Any:
    raise RuntimeError("torchvision is stubbed in this build venv; EdgeNeXt must not use it")


def _placeholder(name: str) -> Any:
    return _Refused(name, (), {"__init__": _refuse, "__call__": _refuse})


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(name)


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers `import torchvision[.x]` with modules whose every name refuses to be used."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []
        module.__version__ = "0+stub"  # type: ignore[attr-defined]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def import_timm() -> Any:
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        sys.meta_path.insert(0, _TorchvisionStub())
        print("torchvision unusable here: stubbed for the build (see module docstring)")
    import timm

    return timm


def _load_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_sources(src: Path) -> None:
    got = sha256_file(src / CHECKPOINT)
    if got != CHECKPOINT_SHA256:
        raise SystemExit(f"{src / CHECKPOINT}: sha256 {got} != expected {CHECKPOINT_SHA256}")


def dequantised_state(src: Path) -> dict[str, Any]:
    """The checkpoint's state dict with every dynamic-int8 Linear turned back into float."""
    import torch

    raw = torch.load(src / CHECKPOINT, map_location="cpu", weights_only=False)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.endswith("._packed_params._packed_params"):
            prefix = key[: -len("._packed_params._packed_params")]
            weight, bias = value
            out[prefix + ".weight"] = weight.dequantize().float()
            if bias is not None:
                out[prefix + ".bias"] = bias.detach().float()
        elif key.endswith(("._packed_params.dtype", ".scale", ".zero_point")) and not hasattr(
            value, "shape"
        ):
            continue  # packing metadata of a quantised Linear
        elif key.endswith((".scale", ".zero_point")) and value.ndim == 0:
            continue  # output scale/zero point of a dynamic Linear (unused in float)
        else:
            out[key] = value.float() if value.is_floating_point() else value
    return out


def build_torch_model(src: Path):  # -> torch.nn.Module, NCHW, upstream layout
    import torch

    import_timm()
    timmfr = _load_module("edgeface_timmfr", src / "backbones/timmfr.py")
    net = timmfr.get_timmfrv2(TIMM_ARCH, batchnorm=False)
    net.load_state_dict(dequantised_state(src), strict=True)
    for module in net.modules():
        if isinstance(module, torch.nn.GELU):
            module.approximate = "tanh"
    freeze_positional_encodings(net.eval())
    static_forwards(net)
    return net


def _xca_forward(self, x):  # CrossCovarianceAttn, self: the timm module
    """timm's XCA with static sizes, 4-D tensors and slices (no 5-D permute, no unbind)."""
    import torch

    b, n, c = (int(v) for v in x.shape)
    h = int(self.num_heads)
    qkv = self.qkv(x)

    def heads(t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, heads, C/heads, N)
        return t.reshape(b, n, h, c // h).permute(0, 2, 3, 1)

    def unit(t: torch.Tensor) -> torch.Tensor:  # F.normalize(t, dim=-1), eps 1e-12
        return t * torch.rsqrt(torch.clamp((t * t).sum(-1, keepdim=True), min=1e-24))

    q, k, v = heads(qkv[:, :, :c]), heads(qkv[:, :, c : 2 * c]), heads(qkv[:, :, 2 * c :])
    attn = (unit(q) @ unit(k).transpose(-2, -1)) * self.temperature
    attn = attn.softmax(dim=-1)
    out = (attn @ v).permute(0, 3, 1, 2).reshape(b, n, c)
    return self.proj(out)


def _split_transpose_forward(self, x):  # SplitTransposeBlock, self: the timm module
    """timm's block with static sizes and slices instead of chunk (Split confuses onnx2tf)."""
    import torch

    shortcut = x
    b, c, hh, ww = (int(v) for v in x.shape)
    parts = len(self.convs) + 1
    width = -(-c // parts)  # what torch.chunk uses
    # each channel group picked by a 1x1 convolution with 0/1 weights (exact): onnx2tf
    # mis-infers the layout of a channel Split or Slice feeding a depthwise convolution
    eye = torch.eye(c, dtype=x.dtype)
    spx = [
        torch.nn.functional.conv2d(x, eye[i * width : min((i + 1) * width, c), :, None, None])
        for i in range(parts)
    ]
    spo = []
    sp = spx[0]
    for i, conv in enumerate(self.convs):
        if i > 0:
            sp = sp + spx[i]
        sp = conv(sp)
        spo.append(sp)
    spo.append(spx[-1])
    x = torch.cat(spo, 1)
    x = x.reshape(b, c, hh * ww).permute(0, 2, 1)
    if self.pos_embd is not None:
        x = x + self.pos_embd((b, hh, ww)).reshape(b, c, hh * ww).permute(0, 2, 1)
    x = x + self.gamma_xca * self.xca(self.norm_xca(x))
    x = x.reshape(b, hh, ww, c)
    x = self.norm(x)
    x = self.mlp(x)
    if self.gamma is not None:
        x = self.gamma * x
    return shortcut + x.permute(0, 3, 1, 2)


def static_forwards(net) -> None:  # net: torch.nn.Module in eval mode
    """Give the attention blocks export-friendly forwards; refuse if outputs change."""
    import torch

    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (1, 3, SIZE, SIZE)))
    x = x.float()
    with torch.no_grad():
        want = net(x)
        n = 0
        for module in net.modules():
            kind = type(module).__name__
            if kind == "CrossCovarianceAttn":
                module.forward = types.MethodType(_xca_forward, module)
                n += 1
            elif kind == "SplitTransposeBlock":
                module.forward = types.MethodType(_split_transpose_forward, module)
                n += 1
        diff = float((net(x) - want).abs().max())
    if diff > 1e-4:
        raise SystemExit(f"static forwards change the output by {diff}")
    print(f"{n} attention blocks given static forwards (max |diff| {diff:.1e})", flush=True)


def freeze_positional_encodings(net) -> None:  # net: torch.nn.Module
    """Replace each Fourier positional encoding by its value for the fixed 112x112 input.

    The encoding depends only on the feature map's size, so for one input size it is a
    constant; exported as ops it leaves a constant-only Reshape that onnx2tf cannot convert.
    """
    import torch

    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in net.named_modules():
        if type(module).__name__ == "PositionalEncodingFourier":
            handles.append(
                module.register_forward_hook(
                    lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach())
                )
            )
    with torch.no_grad():
        net(torch.zeros(1, 3, SIZE, SIZE))
    for h in handles:
        h.remove()

    class Fixed(torch.nn.Module):
        def __init__(self, value: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("value", value.clone())

        def forward(self, _shape: object) -> torch.Tensor:
            return self.value

    for name, value in captured.items():
        parent_name, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent_name), child, Fixed(value))
    print(f"froze {len(captured)} positional encodings for {SIZE}x{SIZE}", flush=True)


def export_onnx(src: Path, dst: Path) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    model = build_torch_model(src)  # NCHW: onnx2tf turns the input into NHWC itself
    x = torch.from_numpy(
        np.random.default_rng(0).uniform(-1, 1, (1, 3, SIZE, SIZE)).astype(np.float32)
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
    print(f"{ROLE}: ONNX vs PyTorch max |diff| {diff:.2e}", flush=True)


def onnx_to_tflite(onnx_path: Path, out: Path) -> dict[str, Path]:
    """onnx2tf -> float32 and dynamic-range int8 .tflite (NCHW input becomes NHWC).

    disable_group_convolution: without it onnx2tf cannot save this graph (its grouped
    convolutions) as a SavedModel, which the TFLiteConverter reads. "Strict mode" is off: it re-checks each
    Mul/Add by building a Keras model around it, which fails on EdgeNeXt's channels-last
    MLP; the whole-model check against PyTorch is done instead (the ONNX check above and
    tools/check_edgeface_conversion.py on real faces).
    """
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
            disable_group_convolution=True,
            disable_strict_mode=True,
            non_verbose=True,
        )
    finally:
        os.chdir(cwd)
    if not (out / "saved_model.pb").exists():
        raise SystemExit(f"onnx2tf wrote no SavedModel in {out}")
    files = {mode: out / f"{mode}.tflite" for mode in FILES}
    for mode, path in files.items():
        to_tflite(out, path, mode)  # the project's converter settings (TF 2.15)
    return files


def manifest_entry(paths: dict[str, Path]) -> dict[str, Any]:
    main = paths[SHIPPED]
    return {
        "file": main.name,
        "sha256": sha256_file(main),
        "bytes": main.stat().st_size,
        **io_spec(main),
        "quantisation": SHIPPED,
        "source": f"EdgeFace-XS {TIMM_ARCH} ({UPSTREAM_REPO} @ {UPSTREAM_COMMIT})",
        "source_file": CHECKPOINT,
        "source_sha256": CHECKPOINT_SHA256,
        "licence": LICENCE,
        "variants": {
            mode: {"file": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size}
            for mode, p in paths.items()
            if mode != SHIPPED and p.parent == main.parent  # only files shipped beside it
        },
        "name": "edgeface_xs",
        "channel_order": "RGB",
        "input_mean": MEAN,
        "input_std": STD,
        "dim": DIM,
        "runtimes": ["tflite_runtime", "litert"],
    }


def merge_manifest(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Add/replace only our role, keeping the settings written by hand (thresholds)."""
    manifest: dict[str, Any] = json.loads(path.read_text())
    models = manifest.setdefault("models", {})
    for role, entry in entries.items():
        kept = {k: v for k, v in models.get(role, {}).items() if k not in entry}
        models[role] = {**kept, **entry}
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC, help="upstream files (README there)")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "edge/infer/models"
    )
    ap.add_argument("--work", type=Path, help="scratch folder, kept (default: a temp dir)")
    ap.add_argument(
        "--variants-dir",
        type=Path,
        help="where the not-shipped int8 dynamic-range file goes (default: the work folder)",
    )
    ap.add_argument("--no-manifest", action="store_true", help="do not touch models.json")
    args = ap.parse_args()

    check_sources(args.src)
    work = args.work or Path(tempfile.mkdtemp(prefix="convert-edgeface-"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    variants_dir = args.variants_dir or work
    variants_dir.mkdir(parents=True, exist_ok=True)

    import tensorflow as tf
    import torch

    if not tf.__version__.startswith("2.15."):
        raise SystemExit(f"TensorFlow {tf.__version__}: need 2.15.x (tflite-runtime 2.14)")
    torch.manual_seed(0)
    onnx_path = work / f"{ROLE}.onnx"
    export_onnx(args.src, onnx_path)
    tfl = work / f"{ROLE}_tflite"
    shutil.rmtree(tfl, ignore_errors=True)
    built = onnx_to_tflite(onnx_path, tfl)
    paths: dict[str, Path] = {}
    for mode, name in FILES.items():
        if mode not in built:
            continue
        dst = (args.out if mode == SHIPPED else variants_dir) / name
        shutil.copyfile(built[mode], dst)
        paths[mode] = dst
        print(f"{ROLE} {mode}: {dst} {dst.stat().st_size} B sha256 {sha256_file(dst)}", flush=True)
    if not args.no_manifest:
        merge_manifest(args.out / "models.json", {ROLE: manifest_entry(paths)})
        print(f"merged {ROLE} into {args.out / 'models.json'}")
    import timm

    print(f"torch {torch.__version__}, timm {timm.__version__}, tensorflow {tf.__version__}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
