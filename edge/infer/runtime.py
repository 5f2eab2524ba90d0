"""Load a .tflite model through tflite_runtime or LiteRT, after its sha256 check.

`auto` takes the first installed runtime of the models manifest's `runtime_order` (the
fastest measured, MODEL_CARD.md); without one, tflite_runtime (2.14, the Pi OS package)
before LiteRT's ai_edge_litert. EDGE_TFLITE_RUNTIME=tflite_runtime|litert overrides `auto`.
The file is hashed, then loaded by path: the runtime mmaps it, the mapping itself is
hashed again (so a file swapped between check and load cannot slip through) and its pages
are dropped once XNNPACK has packed the weights (edge.infer.mapped: 13 MiB less RSS with
every model loaded). Where no mapping is found the hashed bytes are loaded (model_content).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.infer import mapped
from edge.infer.errors import ModelError
from edge.infer.manifest import read_checked, sha256_file

RUNTIMES = ("tflite_runtime", "litert")
ENV_RUNTIME = "EDGE_TFLITE_RUNTIME"
_MODULES = {"tflite_runtime": "tflite_runtime.interpreter", "litert": "ai_edge_litert.interpreter"}


def _import(name: str) -> Any:
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as exc:
        raise ModelError(f"TFLite runtime {name!r} is not installed ({exc})") from None


def resolve_runtime(runtime: str = "auto", order: Sequence[str] = ()) -> str:
    """Which runtime `runtime` means here: explicit, env override, or the first installed
    in `order` (the manifest's, fastest first), then in the built-in order."""
    if runtime == "auto":
        runtime = os.environ.get(ENV_RUNTIME, "auto") or "auto"
    if runtime in RUNTIMES:
        return runtime
    if runtime != "auto":
        raise ModelError(f"runtime {runtime!r}: expected auto, tflite_runtime or litert")
    for name in dict.fromkeys([*(r for r in order if r in RUNTIMES), *RUNTIMES]):
        try:
            importlib.import_module(_MODULES[name])
            return name
        except ImportError:
            continue
    raise ModelError("no TFLite runtime installed (need tflite-runtime or ai-edge-litert)")


class TFLiteModel:
    """One interpreter with named inputs and outputs (from the model's signature)."""

    def __init__(self, path: Path, sha256: str, runtime: str = "auto", threads: int = 1) -> None:
        size = sha256_file(path, sha256)
        self.path = path
        self.sha256 = sha256
        self.runtime = resolve_runtime(runtime)
        module = _import(self.runtime)
        before = mapped.regions(path)
        self._interp = self._load(module, model_path=str(path), num_threads=int(threads))
        fresh = mapped.regions(path) - before
        if len(fresh) == 1:
            start, end = fresh.pop()
            if not size <= end - start < size + 65536 or mapped.sha256_at(start, size) != sha256:
                raise ModelError(f"{path}: the mapped model does not match the manifest's sha256")
            mapped.release(start, end)
        else:  # not mapped (or not found): load exactly the bytes that were checked
            self._interp = self._load(
                module, model_content=read_checked(path, sha256), num_threads=int(threads)
            )
        self._inputs: dict[str, int] = {}
        self._outputs: dict[str, int] = {}
        signatures = self._interp.get_signature_list()
        if signatures:
            key = next(iter(signatures))
            runner = self._interp.get_signature_runner(key)
            details_in = runner.get_input_details()
            details_out = runner.get_output_details()
            self._inputs = {k: int(v["index"]) for k, v in details_in.items()}
            self._outputs = {k: int(v["index"]) for k, v in details_out.items()}
        else:
            self._inputs = {d["name"]: int(d["index"]) for d in self._interp.get_input_details()}
            self._outputs = {d["name"]: int(d["index"]) for d in self._interp.get_output_details()}
        self.input_shapes = {
            d["name"]: tuple(int(x) for x in d["shape"]) for d in self._interp.get_input_details()
        }
        self._shape_by_index = {
            int(d["index"]): tuple(int(x) for x in d["shape"])
            for d in self._interp.get_input_details()
        }

    def _load(self, module: Any, **kwargs: Any) -> Any:
        try:
            interp = module.Interpreter(**kwargs)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path}: {self.runtime} cannot load this model: {exc}") from None
        return interp

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def input_shape(self, name: str) -> tuple[int, ...]:
        return self._shape_by_index[self._inputs[name]]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Invoke once; returns copies of every named output."""
        for name, value in feeds.items():
            self._interp.set_tensor(self._inputs[name], np.ascontiguousarray(value, np.float32))
        self._interp.invoke()
        return {k: np.array(self._interp.get_tensor(i)) for k, i in self._outputs.items()}
