"""One reference template against several: the study behind `edge eval --references N`.

Pure checks on synthetic embeddings, then the real command (real TFLite) on a small
subset of faces-dev under $BANSOS_DATA (symlinks in tmp; `pytest -m data`), once
computing and once from the embedding cache. Runtime: about 15-30 s on a 2-core machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edge_tools.evaluation.evaluate import reference_study

from edge.errors import BadInput
from tests.support.faces import dev_faces, identities, photos


def _synthetic(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """40 identities x 6 noisy photos (a hard set), plus 60 one-photo distractors."""
    rng = np.random.default_rng(seed)
    emb, labels = [], []
    for i in range(40):
        centre = rng.standard_normal(128)
        for _j in range(6):
            v = centre / np.linalg.norm(centre) + 1.6 * rng.standard_normal(128) / np.sqrt(128)
            emb.append(v / np.linalg.norm(v))
            labels.append(i)
    for k in range(60):  # one-photo distractors
        v = rng.standard_normal(128)
        emb.append(v / np.linalg.norm(v))
        labels.append(40 + k)
    e = np.asarray(emb, np.float32)
    return e, np.ones(len(e), bool), np.asarray(labels, np.int32)


def test_more_references_raise_the_threshold_and_share_the_probes() -> None:
    emb, ok, labels = _synthetic()
    rep = reference_study(emb, ok, labels, 3, target_fmr=1e-2, fixed_threshold=0.3, repeats=3)
    rows = {(r["references"], r["templates"]): r for r in rep["results"]}
    assert set(rows) == {(1, "best"), (2, "best"), (3, "best"), (2, "mean"), (3, "mean")}
    assert rep["enrolled_identities"] == 40
    one, two, three = rows[(1, "best")], rows[(2, "best")], rows[(3, "best")]
    for cal in ("A", "B"):
        test = "B" if cal == "A" else "A"
        c1, c2, c3 = (r[f"calibrate_on_{cal}"] for r in (one, two, three))
        # the same probes for every N: the references make the difference
        assert c1[f"genuine_{test}"] == c2[f"genuine_{test}"] == c3[f"genuine_{test}"] > 0
        # a gallery's best of more templates can only score higher, impostors included
        assert c1["threshold"] <= c2["threshold"] <= c3["threshold"]
    # and at one fixed threshold, more templates admit more impostors
    assert one["at_threshold"]["fmr"] <= two["at_threshold"]["fmr"] <= three["at_threshold"]["fmr"]
    # one noisy reference misses often; more references (even at their higher thresholds)
    # miss less, and one mean template of three does best on this set
    assert one["fnmr"] > 0.1 and three["fnmr"] < 0.6 * one["fnmr"]
    assert rows[(3, "mean")]["fnmr"] < three["fnmr"]
    assert three["fnmr_ratio_to_one"] == pytest.approx(three["fnmr"] / one["fnmr"], abs=1e-3)


def test_too_few_photos_is_bad_input() -> None:
    emb, ok, labels = _synthetic()
    with pytest.raises(BadInput, match="need 4\\+ identities with 7\\+ photos"):
        reference_study(emb, ok, labels, 6)


@pytest.mark.data
def test_eval_references_on_a_faces_dev_subset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.cli.face_cmd import main

    dev = dev_faces()
    root = tmp_path / "faces"
    for name in identities(6, dev)[:16]:  # 16 identities x 5 photos
        (root / name).mkdir(parents=True)
        for p in photos(name, dev)[:5]:
            (root / name / p.name).symlink_to(p)
    singles = [p.name for p in dev.iterdir() if p.is_dir() and len(photos(p.name, dev)) == 1]
    for name in sorted(singles)[:30]:
        (root / name).mkdir()
        first = photos(name, dev)[0]
        (root / name / first.name).symlink_to(first)
    cache = tmp_path / "emb.npz"
    args = ["eval", "--faces", str(root), "--references", "3", "--threshold", "0.365"]
    args += ["--cache", str(cache), "--max-impostors", "200000", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert cache.exists()
    assert main(args) == 0  # from the cache: same embeddings, same report
    second = json.loads(capsys.readouterr().out)
    assert first["references"] == second["references"]
    refs = first["references"]
    assert refs["enrolled_identities"] == 16 and refs["max_refs"] == 3
    best = {r["references"]: r for r in refs["results"] if r["templates"] == "best"}
    assert best[1]["calibrate_on_A"]["threshold"] <= best[3]["calibrate_on_A"]["threshold"]
    assert best[3]["at_threshold"]["fnmr"] <= best[1]["at_threshold"]["fnmr"]
    # the human form says it too
    assert main([a for a in args if a != "--json"]) == 0
    assert "reference templates (16 enrolled identities" in capsys.readouterr().out
