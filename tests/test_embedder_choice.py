"""Choosing the face embedder (SFace or EdgeFace-XS) through the manifest and config.

Real models (TFLite through LiteRT), real photos from tests/data, real signed bundles.
"""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from nacl.signing import SigningKey

from edge.config import (
    EMBEDDER_THRESHOLDS,
    ConfigError,
    FaceConfig,
    parse_config,
    with_embedder,
)
from edge.errors import BadInput
from edge.infer.errors import ModelError
from edge.infer.images import load_image
from edge.infer.manifest import BUNDLED_DIR, load_manifest, read_checked, sha256_bytes
from edge.infer.matcher import best_score
from edge.infer.pipeline import FacePipeline, enroll_template
from edge.keys import init_device_key
from edge.roster import parse_bundle, sign_bundle, verify_bundle
from tests.conftest import HqKeys, WriteConfig, run_edge
from tests.roster_fixtures import bundle_body, signed_bundle, write_json

FACES = Path(__file__).parent / "data" / "faces"
NO_TLS = {"mqtt": {"tls": False}}


def _photos(person: str, n: int) -> list[Path]:
    return sorted((FACES / person).glob("*.jpg"))[:n]


@pytest.fixture(scope="module")
def edgeface() -> FacePipeline:
    return FacePipeline.from_config(
        with_embedder(FaceConfig(runtime="litert", threads=1), "edgeface_xs")
    )


def test_manifest_lists_both_embedders_with_their_settings() -> None:
    m = load_manifest()
    assert set(m.embedders) >= {"sface", "edgeface_xs"}
    sface, xs = m.embedder_named("sface"), m.embedder_named("edgeface_xs")
    assert sface is m.embedder  # the `embedder` role stays SFace
    assert (sface.extra["dim"], xs.extra["dim"]) == (128, 512)
    assert (xs.extra["input_mean"], xs.extra["input_std"]) == (127.5, 127.5)
    assert xs.extra["channel_order"] == sface.extra["channel_order"] == "RGB"
    assert 0.0 < xs.extra["suspect_threshold"] < 1.0


def test_edgeface_file_hashes_to_the_manifest() -> None:
    entry = load_manifest().embedder_named("edgeface_xs")
    assert sha256_bytes(read_checked(entry.path, entry.sha256)) == entry.sha256


def test_edgeface_loads_and_embeds_512_unit_vectors(edgeface: FacePipeline) -> None:
    assert edgeface.embedder_sha256 == load_manifest().embedder_named("edgeface_xs").sha256
    t = enroll_template(edgeface, _photos("grace_hopper", 1))
    assert t.shape == (512,)
    assert abs(float(np.linalg.norm(t)) - 1.0) < 1e-4


def test_edgeface_same_person_closer_than_different(edgeface: FacePipeline) -> None:
    hopper = [enroll_template(edgeface, [p]) for p in _photos("grace_hopper", 3)]
    collins = [enroll_template(edgeface, [p]) for p in _photos("eileen_collins", 3)]
    same = [best_score(hopper[0], [h]) for h in hopper[1:]]
    same += [best_score(collins[0], [c]) for c in collins[1:]]
    different = [best_score(h, [c]) for h in hopper for c in collins]
    assert min(same) > max(different)
    t1 = EMBEDDER_THRESHOLDS["edgeface_xs"][0]
    assert min(same) >= t1 > max(different)  # the calibrated threshold separates them


def test_mixed_embedders_refused_when_compared(edgeface: FacePipeline) -> None:
    with pytest.raises(BadInput, match="another embedder"):
        best_score(np.ones(512, np.float32), [np.ones(128, np.float32)])


def test_bundle_for_sface_refused_by_an_edgeface_kiosk(edgeface: FacePipeline) -> None:
    hq = SigningKey.generate()
    sface_sha = load_manifest().embedder_named("sface").sha256
    bundle = signed_bundle(hq, model=sface_sha)
    with pytest.raises(BadInput) as err:
        verify_bundle(bundle, hq.verify_key, edgeface.embedder_sha256, None, "old.json")
    assert str(err.value) == (
        f"old.json: model: bundle made for embedder sface ({sface_sha[:12]}), this kiosk"
        f" runs edgeface_xs ({edgeface.embedder_sha256[:12]}): HQ must rebuild the roster"
        " for it (edge hq roster build --embedder edgeface_xs)"
    )
    # the same bundle is accepted by a kiosk running SFace
    assert verify_bundle(bundle, hq.verify_key, sface_sha).model == sface_sha


def test_bundle_templates_must_share_one_size() -> None:
    hq = SigningKey.generate()
    body = bundle_body(1)
    t = body["entries"][0]["templates"][0]
    wide = base64.b64encode(np.ones(512, "<f4").tobytes()).decode()
    body["entries"][0]["templates"] = [t, wide]
    with pytest.raises(BadInput, match="one embedder per bundle"):
        parse_bundle(sign_bundle(body, hq), "mixed.json")


def test_config_refuses_an_unknown_embedder() -> None:
    with pytest.raises(ConfigError, match=r"face\.embedder: expected one of sface, edgeface_xs"):
        parse_config({"face": {"embedder": "arcface"}, **NO_TLS})


def test_config_takes_the_chosen_embedders_thresholds() -> None:
    cfg = parse_config({"face": {"embedder": "edgeface_xs"}, **NO_TLS})
    got = (cfg.face.threshold, cfg.face.threshold_2_templates, cfg.face.threshold_3_templates)
    assert got == EMBEDDER_THRESHOLDS["edgeface_xs"]
    cfg = parse_config({"face": {"embedder": "sface"}, **NO_TLS})
    assert cfg.face.threshold == EMBEDDER_THRESHOLDS["sface"][0]
    # a threshold set in the file is kept
    cfg = parse_config({"face": {"embedder": "edgeface_xs", "threshold": 0.2}, **NO_TLS})
    assert cfg.face.threshold == 0.2


def test_manifest_without_the_chosen_embedder_is_a_clear_error(tmp_path: Path) -> None:
    for f in BUNDLED_DIR.iterdir():
        if f.suffix in (".tflite", ".json"):
            (tmp_path / f.name).symlink_to(f)
    raw = json.loads((BUNDLED_DIR / "models.json").read_text())
    del raw["models"]["embedder_edgeface_xs"]
    (tmp_path / "models.json").unlink()
    (tmp_path / "models.json").write_text(json.dumps(raw))
    face = with_embedder(FaceConfig(models_dir=str(tmp_path), runtime="litert"), "edgeface_xs")
    with pytest.raises(ModelError, match=r"no embedder named 'edgeface_xs' \(has: sface\)"):
        FacePipeline.from_config(face)


def test_embedder_file_refused_under_a_runtime_it_is_not_for(tmp_path: Path) -> None:
    for f in BUNDLED_DIR.iterdir():
        if f.suffix == ".tflite":
            (tmp_path / f.name).symlink_to(f)
    raw = json.loads((BUNDLED_DIR / "models.json").read_text())
    raw["models"]["embedder_edgeface_xs"]["runtimes"] = ["tflite_runtime"]
    (tmp_path / "models.json").write_text(json.dumps(raw))
    face = replace(
        with_embedder(FaceConfig(models_dir=str(tmp_path)), "edgeface_xs"), runtime="litert"
    )
    with pytest.raises(ModelError, match="made for tflite_runtime, not litert"):
        FacePipeline.from_config(face)
    shutil.rmtree(tmp_path)


@pytest.mark.data
def test_edgeface_threshold_holds_on_a_spread_of_dev_identities(edgeface: FacePipeline) -> None:
    """80 faces-dev photos (2 each of 40 identities spread over the set): the calibrated
    one-template threshold (FMR 1e-3 on the whole set) accepts nearly every genuine pair and
    nearly no impostor pair. Expected at FMR 1e-3 / FNMR 0.0067: ~3 of 3,160 impostor pairs,
    ~0.3 of 40 genuine pairs; the bounds leave room for chance, not for a broken model."""
    from tests.support.faces import dev_faces, identities, photos

    dev = dev_faces()
    names = identities(2, dev)[::6][:40]
    embs, who = [], []
    for name in names:
        for path in photos(name, dev)[:2]:
            r = edgeface.analyse(load_image(path), gates=False)
            if r.embedding is not None:
                embs.append(r.embedding)
                who.append(name)
    e = np.stack(embs)
    sims = e @ e.T
    t1 = EMBEDDER_THRESHOLDS["edgeface_xs"][0]
    pairs = [(i, j) for i in range(len(e)) for j in range(i + 1, len(e))]
    genuine = [sims[i, j] for i, j in pairs if who[i] == who[j]]
    impostor = [sims[i, j] for i, j in pairs if who[i] != who[j]]
    assert len(genuine) >= 38
    assert sum(s < t1 for s in genuine) <= 2, sorted(genuine)[:5]
    assert sum(s >= t1 for s in impostor) <= 15, sorted(impostor)[-20:]


def test_edgeface_same_embeddings_under_both_runtimes() -> None:
    """The manifest says the file is for tflite_runtime (the Pi's) and LiteRT: both load it
    and give the same embedding (float32: no hybrid-kernel differences)."""
    crops = []
    for runtime in ("tflite_runtime", "litert"):
        pipe = FacePipeline.from_config(
            with_embedder(FaceConfig(runtime=runtime, threads=1), "edgeface_xs")
        )
        assert pipe.embedder.model.runtime == runtime
        crops.append(enroll_template(pipe, _photos("eileen_collins", 1)))
    assert float(np.dot(crops[0], crops[1])) >= 0.999


def test_cli_edgeface_kiosk_refuses_an_sface_bundle_and_takes_its_own(
    write_config: WriteConfig, hq_keys: HqKeys, tmp_path: Path
) -> None:
    cfg = write_config(face={"embedder": "edgeface_xs"})
    init_device_key(tmp_path / "state" / "device.key")
    m = load_manifest()
    sface_sha, xs_sha = m.embedder_named("sface").sha256, m.embedder_named("edgeface_xs").sha256
    old = write_json(tmp_path / "old.json", signed_bundle(hq_keys.signing, model=sface_sha))
    res = run_edge("roster", "import", "--config", str(cfg), str(old))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{old}: model: bundle made for embedder sface ({sface_sha[:12]})" in res.stderr
    assert "edge hq roster build --embedder edgeface_xs" in res.stderr
    body = bundle_body(2, model=xs_sha)
    wide = base64.b64encode(np.full(512, 0.04, "<f4").tobytes()).decode()
    for e in body["entries"]:
        e["templates"] = [wide]
    new = write_json(tmp_path / "new.json", sign_bundle(body, hq_keys.signing))
    res = run_edge("roster", "import", "--config", str(cfg), str(new), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["entries"] == 2
