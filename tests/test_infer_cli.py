"""`edge eval` and `edge enroll` through the real command line error mapping."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main  # `edge eval|enroll` with the real error mapping
from edge.config import CONFIG_ENV
from edge.infer.manifest import load_manifest
from tests.support.faces import FACES, OTHER, PERSON, dev_faces, make_subset, photos


@pytest.fixture(autouse=True)
def _no_system_config(monkeypatch, tmp_path):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setattr("edge.cli.face_cmd.DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")


FAST = ("--runtime", "litert", "--threads", "1")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.data
def test_eval_small_set_json_plot_and_threshold(tmp_path, capsys):
    faces = make_subset(tmp_path / "faces", n_multi=14, n_single=16, root=dev_faces())
    plot = tmp_path / "det.png"
    code, out, err = run(
        capsys,
        "eval",
        "--faces",
        str(faces),
        "--plot",
        str(plot),
        "--threshold",
        "0.3",
        "--json",
        *FAST,
    )
    assert code == 0, err
    rep = json.loads(out)
    assert rep["identities"] == 30 and rep["genuine_pairs"] > 50
    assert rep["impostor_pairs"] > 3_000  # all of them (fewer than the 200k sample floor)
    assert set(rep["at_fmr"]) == {"0.01", "0.001", "0.0001"}
    assert 0 <= rep["eer"] < 0.1
    assert rep["at_fmr"]["0.001"]["fnmr"] < 0.2
    assert rep["failure_to_acquire"] < 0.05
    assert rep["at_threshold"]["threshold"] == 0.3
    assert 0 <= rep["at_threshold"]["fmr"] < 0.01
    sh = rep["split_half"]["calibrate_on_A"]
    assert -1 <= sh["threshold"] <= 1 and 0 <= sh["fmr_on_B"] < 0.02
    sl = rep["slices"]["sample"]
    assert sl["identities"] == 3 and sl["genuine_pairs"] > 0
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert rep["embedder_sha256"] == load_manifest("").embedder.sha256
    assert "embedding faces" in err  # the progress bar goes to stderr


def test_eval_human_output_and_bad_folder(tmp_path, capsys):
    faces = make_subset(tmp_path / "faces", n_multi=2, slice_from=1)  # the bundled two
    code, out, err = run(capsys, "eval", "--faces", str(faces), "--max-impostors", "200000", *FAST)
    assert code == 0, err
    assert "FMR  0.001" in out and "split-half" in out
    code, _, err = run(capsys, "eval", "--faces", str(tmp_path / "nope"))
    assert code == 2 and "nope" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "slices.json").write_text("[1,")
    code, _, err = run(capsys, "eval", "--faces", str(tmp_path / "bad"))
    assert code == 2


def test_enroll_prints_template(capsys):
    name = PERSON
    code, out, err = run(capsys, "enroll", "--kpm", "KPM-1", *map(str, photos(name)[:2]), "--json")
    assert code == 0, err
    doc = json.loads(out)
    t = np.frombuffer(base64.b64decode(doc["template"]), "<f4")
    assert t.shape == (128,) and abs(float(np.linalg.norm(t)) - 1) < 1e-5
    assert doc["model"] == load_manifest("").embedder.sha256 and doc["photos"] == 2


def test_enroll_bad_photo_is_exit_2(tmp_path, capsys):
    trunc = tmp_path / "cut.jpg"
    trunc.write_bytes(photos(OTHER)[0].read_bytes()[:3000])
    code, _, err = run(capsys, "enroll", "--kpm", "K", str(trunc))
    assert code == 2 and "cut.jpg" in err and "Traceback" not in err


def test_missing_or_altered_models_are_exit_2(tmp_path, capsys):
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f'[face]\nmodels_dir = "{tmp_path / "models"}"\n')
    code, _, err = run(capsys, "--config", str(cfg), "enroll", "--kpm", "K", str(photos(OTHER)[0]))
    assert code == 2 and "models" in err and "Traceback" not in err


def test_faces_dir_exists():
    assert FACES.is_dir() and isinstance(FACES, Path)


def test_eval_picks_the_embedder(tmp_path, capsys):
    """`edge eval --embedder edgeface_xs` embeds with EdgeFace (512-d) and says so; an
    unknown name is a usage error (exit 2), not a traceback."""
    code, out, err = run(
        capsys, "eval", "--faces", str(FACES), "--embedder", "edgeface_xs", "--json", *FAST
    )
    assert code == 0, err
    rep = json.loads(out)
    assert rep["embedder"] == "edgeface_xs"
    assert rep["embedder_sha256"] == load_manifest("").embedder_named("edgeface_xs").sha256
    assert rep["genuine_pairs"] == 90 and rep["impostor_pairs"] == 100
    assert rep["eer"] == 0.0  # two very different people, ten photos each
    code, out, err = run(capsys, "eval", "--faces", str(FACES), "--embedder", "arcface")
    assert code == 2 and "Traceback" not in err and "'arcface' is not one of" in err
