"""The PAD models for real (both runtimes), on the three upstream sample photos.

Bona fide must score live and both printed-photo attacks spoof; a tampered or missing
model file, a face at the frame border and a tiny face must each end cleanly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.config import FaceConfig, LivenessConfig
from edge.infer.errors import ModelError
from edge.infer.images import load_image
from edge.infer.manifest import BUNDLED_DIR, load_manifest, verify_files
from edge.infer.pad import LivenessModel
from edge.infer.pipeline import FacePipeline

PAD = Path(__file__).resolve().parent / "data" / "pad"
RUNTIMES = ("tflite_runtime", "litert")


@pytest.fixture(scope="module")
def pipelines() -> dict[str, FacePipeline]:
    return {
        rt: FacePipeline.from_config(FaceConfig(runtime=rt), liveness_cfg=LivenessConfig())
        for rt in RUNTIMES
    }


def test_manifest_lists_both_pad_models_with_their_scales():
    m = load_manifest()
    assert [e.role for e in m.pad] == ["pad_v2", "pad_v1se"]
    assert [e.extra["scale"] for e in m.pad] == [2.7, 4.0]
    verify_files(m)  # every sha256 holds, PAD files included


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_samples_bona_fide_live_attacks_not(pipelines, runtime):
    p = pipelines[runtime]
    live = p.analyse(load_image(PAD / "image_T1.jpg")).liveness
    assert live is not None and live > 0.9
    for name in ("image_F1.jpg", "image_F2.jpg"):
        r = p.analyse(load_image(PAD / name))
        assert r.status == "ok" and r.liveness is not None and r.liveness < 0.2, name


def test_runtimes_agree(pipelines):
    for name in ("image_T1.jpg", "image_F1.jpg", "image_F2.jpg"):
        frame = load_image(PAD / name)
        a, b = (pipelines[rt].analyse(frame, embed=False).liveness for rt in RUNTIMES)
        assert a is not None and b is not None and abs(a - b) < 1e-4, name


def test_a_burst_of_a_print_is_spoof_never_match(pipelines):
    p = pipelines["litert"]
    ref = p.analyse(load_image(PAD / "image_F1.jpg")).embedding
    assert ref is not None
    # the reference template is the print's own face: face matching alone says match
    frames = [load_image(PAD / "image_F1.jpg")] * 3
    d = p.verify_burst(frames, [ref])
    assert d.decision == "spoof" and d.score is not None and d.score > 0.9
    assert d.liveness is not None and d.liveness.score is not None
    assert d.liveness.score < d.liveness.threshold and "presentation attack" in (d.reason or "")
    rec = d.liveness_record()
    assert rec is not None and rec["models"] == [e.sha256 for e in load_manifest().pad]


def test_live_burst_matches_and_carries_liveness(pipelines):
    p = pipelines["litert"]
    frame = load_image(PAD / "image_T1.jpg")
    ref = p.analyse(frame).embedding
    d = p.verify_burst([frame] * 3, [ref])
    assert d.decision == "match" and d.liveness is not None and d.liveness.live is True
    assert d.liveness.frames_judged == 3 and d.liveness.frames_live == 3


def test_face_at_the_frame_border_is_scored_not_crashed(pipelines):
    p = pipelines["litert"]
    frame = load_image(PAD / "image_T1.jpg")
    r = p.analyse(frame)
    assert r.detection is not None
    x, y, w, h = (int(v) for v in r.detection.box)
    # cut the frame so the face touches the left and top border: the scaled box clamps
    cut = np.ascontiguousarray(frame[y + h // 8 :, x + w // 8 :])
    out = p.analyse(cut)
    assert out.status in ("ok", "poor_quality", "no_face")
    if out.status == "ok":
        assert out.liveness is not None and 0.0 <= out.liveness <= 1.0
    # and the PAD model itself on a box hanging outside the frame
    assert 0.0 <= p.liveness.score(frame, (-40.0, -40.0, 200.0, 220.0)) <= 1.0


def test_a_tiny_face_is_poor_quality_not_judged(pipelines):
    from PIL import Image

    p = pipelines["litert"]
    small = np.asarray(Image.open(PAD / "image_T1.jpg").resize((120, 160)))
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[160:320, 260:380] = small[:, :, :3] if small.ndim == 3 else small[..., None]
    ref = p.analyse(load_image(PAD / "image_T1.jpg")).embedding
    d = p.verify_burst([frame] * 3, [ref])
    assert d.decision in ("poor_quality", "no_face"), d.reason
    assert d.liveness is None


def _models_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "models"
    shutil.copytree(BUNDLED_DIR, dest, ignore=shutil.ignore_patterns("*_fp32.tflite"))
    return dest


def test_an_altered_pad_model_is_refused(tmp_path):
    d = _models_copy(tmp_path)
    f = d / load_manifest().pad[0].path.name
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the manifest"):
        FacePipeline.from_config(FaceConfig(models_dir=str(d)), liveness_cfg=LivenessConfig())


def test_a_missing_pad_model_is_a_clear_error(tmp_path):
    d = _models_copy(tmp_path)
    (d / load_manifest().pad[1].path.name).unlink()
    with pytest.raises(ModelError, match="model file missing"):
        FacePipeline.from_config(FaceConfig(models_dir=str(d)), liveness_cfg=LivenessConfig())


def test_a_manifest_without_pad_fails_only_when_liveness_is_on(tmp_path):
    d = _models_copy(tmp_path)
    manifest = json.loads((d / "models.json").read_text())
    for role in ("pad_v2", "pad_v1se"):
        del manifest["models"][role]
    (d / "models.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="lists no PAD models"):
        LivenessModel.load(load_manifest(d))
    off = FacePipeline.from_config(
        FaceConfig(models_dir=str(d)), liveness_cfg=LivenessConfig(enabled=False)
    )
    assert off.liveness is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("scale", 0.2, "scale"), ("input_size", [80], "input_size"), ("real_index", 7, "real_index")],
)
def test_a_broken_pad_manifest_entry_names_the_key(tmp_path, key, value, message):
    d = _models_copy(tmp_path)
    manifest = json.loads((d / "models.json").read_text())
    manifest["models"]["pad_v2"][key] = value
    (d / "models.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=rf"models\.pad_v2\.{message}"):
        load_manifest(d)
