"""The shipped models: manifest, sha256 check on load, both runtimes load and agree."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.config import FaceConfig
from edge.errors import BadInput
from edge.infer.errors import ModelError
from edge.infer.images import load_image
from edge.infer.manifest import BUNDLED_DIR, load_manifest, sha256_bytes, verify_files
from edge.infer.pipeline import FacePipeline
from edge.infer.runtime import ENV_RUNTIME, TFLiteModel, _import, resolve_runtime
from tests.support.faces import OTHER, PERSON, RUNTIMES, all_photos, face, pipeline


def test_manifest_gives_embedder_hash_without_loading_models():
    m = load_manifest("")
    assert m.embedder.sha256 == sha256_bytes(m.embedder.path.read_bytes())
    assert m.detector.path.exists() and m.embedder.path.exists()
    assert m.embedder.outputs == {"fc1": [1, 128]}
    verify_files(m)


def _copy_models(tmp_path: Path) -> Path:
    dest = tmp_path / "models"
    dest.mkdir()
    m = load_manifest("")
    for p in (m.detector.path, m.embedder.path, BUNDLED_DIR / "models.json"):
        shutil.copy(p, dest / p.name)
    return dest


def test_altered_model_file_is_refused(tmp_path):
    d = _copy_models(tmp_path)
    emb = d / load_manifest(d).embedder.path.name
    data = bytearray(emb.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    emb.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        FacePipeline.from_config(FaceConfig(models_dir=str(d)))
    with pytest.raises(ModelError, match=emb.name):
        verify_files(load_manifest(d))


def test_missing_model_file_and_missing_or_bad_manifest(tmp_path):
    d = _copy_models(tmp_path)
    load_manifest(d).detector.path.unlink()
    with pytest.raises(ModelError, match="missing"):
        FacePipeline.from_config(FaceConfig(models_dir=str(d)))
    with pytest.raises(ModelError, match="not found"):
        load_manifest(tmp_path / "nowhere")
    (d / "models.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"models\.json"):
        load_manifest(d)
    (d / "models.json").write_text(json.dumps({"models": {"detector": {"file": "x"}}}))
    with pytest.raises(ModelError, match="sha256"):
        load_manifest(d)
    assert issubclass(ModelError, BadInput)  # exit 2 on the command line


def test_runtime_selection(monkeypatch):
    monkeypatch.delenv(ENV_RUNTIME, raising=False)
    assert resolve_runtime("auto") == "tflite_runtime"  # the Pi's package wins where installed
    assert resolve_runtime("litert") == "litert"
    monkeypatch.setenv(ENV_RUNTIME, "tflite_runtime")
    assert resolve_runtime("auto") == "tflite_runtime"
    monkeypatch.setenv(ENV_RUNTIME, "litert")
    assert resolve_runtime("auto") == "litert"
    with pytest.raises(ModelError):
        resolve_runtime("onnx")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_runtime_loads_the_shipped_models(runtime):
    p = pipeline(runtime)
    assert p.runtime == runtime
    r = p.analyse(face(PERSON))
    assert r.status == "ok" and r.embedding is not None
    assert r.embedding.dtype == np.float32 and r.embedding.shape == (128,)
    assert np.linalg.norm(r.embedding) == pytest.approx(1.0, abs=1e-5)
    assert p.embedder_sha256 == load_manifest("").embedder.sha256


def test_both_runtimes_give_the_same_results():
    a, b = pipeline("tflite_runtime"), pipeline("litert")
    shots = all_photos()  # 20 photos of two people
    cos = []
    for shot in shots:
        frame = load_image(shot)
        ra, rb = a.analyse(frame, gates=False), b.analyse(frame, gates=False)
        assert ra.status == rb.status == "ok"
        assert ra.detection is not None and rb.detection is not None
        assert np.allclose(ra.detection.box, rb.detection.box, atol=0.5)
        assert ra.embedding is not None and rb.embedding is not None
        cos.append(float(ra.embedding @ rb.embedding))
    assert min(cos) >= 0.995, cos
    pairs = [face(n, i) for n in (PERSON, OTHER) for i in (1, 7)]  # genuine and impostor
    ea = [a.analyse(f, gates=False).embedding for f in pairs]
    eb = [b.analyse(f, gates=False).embedding for f in pairs]
    sa = np.array(ea) @ np.array(ea).T
    sb = np.array(eb) @ np.array(eb).T
    assert np.abs(sa - sb).max() < 0.02  # pair scores agree too


def test_threads_from_config_are_accepted():
    cfg = replace(FaceConfig(), runtime="litert", threads=2)
    assert FacePipeline.from_config(cfg).analyse(face(OTHER)).status == "ok"


def _resident_kib(path: Path) -> dict[str, int]:
    """Rss (KiB) of each mapping of `path` in this process, by address, from /proc/self/smaps."""
    out: dict[str, int] = {}
    current = None
    target = str(path.resolve())
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:
            current = head[0] if len(head) == 6 and head[5] == target else None
        elif current and line.startswith("Rss:"):
            out[current] = int(line.split()[1])
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_embedder_is_mapped_checked_and_its_pages_dropped(runtime):
    """Loaded by path: the mapping's 9.4 MiB are not held in RSS once the interpreter is
    built (under LiteRT, whose XNNPACK packs the int8 weights, not even after a run; 2.14's
    hybrid kernels read them back from the file), and the embeddings equal those of the
    model loaded from its checked bytes."""
    entry = load_manifest("").embedder
    before = _resident_kib(entry.path)
    model = TFLiteModel(entry.path, entry.sha256, runtime)
    fresh = [a for a in _resident_kib(entry.path) if a not in before]
    assert len(fresh) == 1, "the runtime did not map the file"
    assert _resident_kib(entry.path)[fresh[0]] < 1024  # KiB: the weights were handed back
    crop = np.random.default_rng(3).integers(0, 256, (1, 112, 112, 3)).astype(np.float32)
    name, out = model.input_names[0], model.output_names[0]
    got = model.run({name: crop})[out]
    if runtime == "litert":
        assert _resident_kib(entry.path)[fresh[0]] < 1024
    module = _import(model.runtime)
    ref = module.Interpreter(model_content=entry.path.read_bytes(), num_threads=1)
    ref.allocate_tensors()
    ref.set_tensor(ref.get_input_details()[0]["index"], crop)
    ref.invoke()
    want = ref.get_tensor(ref.get_output_details()[0]["index"])
    assert np.array_equal(got, want)
