"""Which runtime and which model file: the manifest's runtime order and per-runtime files.

`auto` takes the fastest installed runtime by the manifest's measured order (LiteRT runs
the int8 embedder on XNNPACK, 3-8x faster than tflite-runtime 2.14 on x86). A runtime may
load its own file of the same weights (`runtime_files`); the model id stays the main file's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge.config import FaceConfig
from edge.infer.errors import ModelError
from edge.infer.images import load_image
from edge.infer.manifest import BUNDLED_DIR, load_manifest
from edge.infer.pipeline import FacePipeline
from edge.infer.runtime import ENV_RUNTIME, resolve_runtime
from tests.support.faces import all_photos


def test_auto_takes_the_manifests_fastest_installed_runtime(monkeypatch):
    monkeypatch.delenv(ENV_RUNTIME, raising=False)
    order = load_manifest("").runtimes_for()
    assert order[0] == "litert"  # measured fastest on x86 (MODEL_CARD.md)
    assert resolve_runtime("auto", order) == "litert"
    assert resolve_runtime("auto", ("tflite_runtime", "litert")) == "tflite_runtime"
    assert resolve_runtime("auto", ("onnx", "litert")) == "litert"  # unknown names skipped
    monkeypatch.setenv(ENV_RUNTIME, "tflite_runtime")
    assert resolve_runtime("auto", order) == "tflite_runtime"  # the override still wins
    p = FacePipeline.from_config(FaceConfig(runtime="auto", threads=1))
    assert p.runtime == "tflite_runtime"


def _manifest_copy(tmp_path: Path, change) -> Path:
    dest = tmp_path / "models"
    shutil.copytree(BUNDLED_DIR, dest)
    data = json.loads((dest / "models.json").read_text())
    change(data)
    (dest / "models.json").write_text(json.dumps(data))
    return dest


def test_a_runtime_loads_the_file_the_manifest_gives_it_known_by_the_main_sha(
    tmp_path, monkeypatch
):
    """runtime_files: a runtime may load another file of the same weights (e.g. one a newer
    converter wrote that only LiteRT loads); rosters and records keep the main file's id."""
    monkeypatch.delenv(ENV_RUNTIME, raising=False)

    def litert_takes_fp32(d):
        d["models"]["embedder"]["runtime_files"] = {"litert": "fp32"}

    models = _manifest_copy(tmp_path, litert_takes_fp32)
    m = load_manifest(models)
    lite = FacePipeline.from_config(FaceConfig(models_dir=str(models), runtime="auto", threads=1))
    assert lite.runtime == "litert"
    assert lite.embedder.model.path == m.embedder.variants["fp32"]
    legacy = FacePipeline.from_config(
        FaceConfig(models_dir=str(models), runtime="tflite_runtime", threads=1)
    )
    assert legacy.embedder.model.path == m.embedder.path
    assert lite.embedder_sha256 == legacy.embedder_sha256 == m.embedder.sha256
    frame = load_image(all_photos()[0])
    a, b = lite.analyse(frame).embedding, legacy.analyse(frame).embedding
    assert a is not None and b is not None and float(a @ b) > 0.99


def test_bad_runtime_files_and_order_are_refused(tmp_path):
    def unknown_variant(d):
        d["models"]["embedder"]["runtime_files"] = {"litert": "nope"}

    with pytest.raises(ModelError, match="runtime_files"):
        load_manifest(_manifest_copy(tmp_path / "a", unknown_variant))

    def bad_order(d):
        d["runtime_order"] = {"default": "litert"}

    with pytest.raises(ModelError, match="runtime_order"):
        load_manifest(_manifest_copy(tmp_path / "b", bad_order))


def test_a_manifest_without_the_new_keys_still_loads(tmp_path):
    """Older manifests (no runtime_order, runtime_files, channel_order) keep working."""

    def old(d):
        d.pop("runtime_order", None)
        d["models"]["embedder"].pop("runtime_files", None)

    m = load_manifest(_manifest_copy(tmp_path, old))
    assert m.runtimes_for() == ()
    assert m.embedder.file_for("litert") == (m.embedder.path, m.embedder.sha256)
