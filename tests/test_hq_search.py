"""The 1:N search at scale: in-region blocks, the national FAISS pass, resume after a kill,
the [suspects] config, and the tail fit behind the thresholds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.cli import cli, main
from edge.config import ConfigError
from edge_hq.calibrate import Population, TailFit, fit_gpd
from edge_hq.cli import hq_group
from edge_hq.config import SuspectsConfig, parse_hq_config
from edge_hq.db import open_database
from edge_hq.keys import load_hq_box
from edge_hq.national import IndexSpec, national_pass
from edge_hq.regions import Region
from edge_hq.search import search_period
from edge_hq.suspects import Face, normalise
from tests.support.helpers import write_toml
from tests.support.hq import SimKiosk, unit_vector
from tests.test_hq_double import _register, _store

if "hq" not in cli.commands:
    cli.add_command(hq_group)

REPO = Path(__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _cfg(tmp_path: Path, url: str, name: str = "hq", **sus: Any) -> list[str]:
    """An HQ config (keys in tmp_path/k); `sus` overrides [suspects]."""
    doc: dict[str, Any] = {
        "broker": {"tls": False},
        "database": {"url": url},
        "keys": {"dir": str(tmp_path / "k")},
        "suspects": {"index": "hnsw", "index_dir": str(tmp_path / f"idx-{name}"), **sus},
    }
    return ["--hq-config", str(write_toml(tmp_path / f"{name}.toml", doc))]


def _hq(tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    cfg = _cfg(tmp_path, url)
    assert run(capsys, "hq", "keys", "init", *cfg)[0] == 0
    return cfg


def _near(v: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Another capture of the same face: cosine to v about 1 / sqrt(1 + noise^2)."""
    return normalise((v + noise * unit_vector(rng))[None])[0]


def test_planted_face_across_two_regions_found_by_both_passes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_url: str
) -> None:
    cfg = _hq(tmp_path, db_url, capsys)
    box = load_hq_box(tmp_path / "k")
    van_a, van_b = SimKiosk(box.public_key), SimKiosk(box.public_key)
    _register(capsys, cfg, van_a, van_b)
    rng = np.random.default_rng(23)
    # one proxy: the same face for three KPMs, two in Sleman and one in Bantul
    proxy = unit_vector(rng)
    a_recs = [van_a.record(f"SL-{i}", embedding=unit_vector(rng)) for i in range(60)]
    b_recs = [van_b.record(f"BA-{i}", embedding=unit_vector(rng)) for i in range(60)]
    a_recs += [
        van_a.record("SL-P1", embedding=_near(proxy, rng, 0.25)),
        van_a.record("SL-P2", embedding=_near(proxy, rng, 0.25)),
    ]
    b_recs.append(van_b.record("BA-P3", embedding=_near(proxy, rng, 0.25)))
    db = open_database(db_url)
    try:
        _store(db, van_a, a_recs)
        _store(db, van_b, b_recs)
    finally:
        db.close()
    rows = ["kpm_id,programme,period,province,district,subdistrict"]
    rows += [f"SL-{i},sembako,2026-11,DIY,Sleman,Depok" for i in [*range(60), "P1", "P2"]]
    rows += [f"BA-{i},sembako,2026-11,DIY,Bantul,Sewon" for i in [*range(60), "P3"]]
    (tmp_path / "kpm.csv").write_text("\n".join(rows) + "\n")
    code, out, err = run(
        capsys, "hq", "regions", "import", "--csv", str(tmp_path / "kpm.csv"), "--json", *cfg
    )
    assert code == 0, err
    assert json.loads(out) == {"kpms": 123, "districts": 2}

    code, out, err = run(capsys, "hq", "report", "--json", "--actor", "auditor", *cfg)
    assert code == 0, err
    rep = json.loads(out)
    (sus,) = rep["suspects"]
    assert sus["kpm_ids"] == ["BA-P3", "SL-P1", "SL-P2"]
    assert sus["found_by"] == ["national", "region"]
    assert sus["device_ids"] == sorted([van_a.device_id, van_b.device_id])
    (searched,) = rep["suspect_search"]["periods"]
    assert searched["faces"] == 123
    assert searched["region"]["blocks"] == {"DIY/Bantul": 61, "DIY/Sleman": 62}
    assert searched["region"]["blocks_not_searched"] == []
    assert searched["national"]["index"] == "IndexHNSWFlat"
    assert searched["national"]["M"] == 32 and searched["national"]["efSearch"] == 128
    assert Path(searched["national"]["index_file"]).is_file()

    # in-region alone: only the two Sleman KPMs; Bantul's is in another block
    cfg2 = _cfg(tmp_path, db_url, "region", national=False)
    code, out, err = run(capsys, "hq", "report", "--json", "--actor", "auditor", *cfg2)
    assert code == 0, err
    (sus,) = json.loads(out)["suspects"]
    assert sus["kpm_ids"] == ["SL-P1", "SL-P2"] and sus["found_by"] == ["region"]
    # a block too big for exact search is named, not searched (the national pass covers it)
    cfg4 = _cfg(tmp_path, db_url, "small", national=False, max_block=61)
    code, out, err = run(capsys, "hq", "report", "--json", "--actor", "auditor", *cfg4)
    assert code == 0, err
    rep4 = json.loads(out)
    assert rep4["suspects"] == []
    assert rep4["suspect_search"]["periods"][0]["region"]["blocks_not_searched"] == ["DIY/Sleman"]
    # national alone (no regions): all three
    cfg3 = _cfg(tmp_path, db_url, "national", region_level="none")
    code, out, err = run(capsys, "hq", "report", "--actor", "auditor", *cfg3)
    assert code == 0, err
    assert "same face for BA-P3, SL-P1, SL-P2" in out and "found by national" in out
    assert "national IndexHNSWFlat at 0.8493" in out


def test_national_ivf_pass_finds_planted_faces_among_many(tmp_path: Path) -> None:
    """The default index (IVF, used from 20,000 faces) on a synthetic period."""
    rng = np.random.default_rng(5)
    n = 25_000
    m = normalise(rng.standard_normal((n, 128)).astype(np.float32))
    faces = [Face(f"r{i:05d}", f"K{i}", "kiosk-a", m[i]) for i in range(n)]
    regions = {f"K{i}": Region("P", f"D{i % 50}", "") for i in range(n)}
    picked = rng.choice(n, size=80, replace=False).tolist()
    for at, other in zip(picked[:40], picked[40:], strict=True):
        faces[other] = replace(faces[other], embedding=_near(m[at], rng, 0.2))
    cfg = SuspectsConfig(region_level="district", index="ivf")
    res = search_period("2026-11", faces, regions, cfg, tmp_path)
    assert res.info["national"]["index"] == "IndexIVFFlat"
    found = {s.kpm_ids for s in res.suspects if "national" in s.found_by}
    assert len(found) == 40


def test_no_false_group_at_the_chosen_thresholds(tmp_path: Path) -> None:
    """Strangers only: nothing at the configured thresholds; at a loose one, leads appear
    (so the search did run over these faces)."""
    rng = np.random.default_rng(9)
    n = 3000
    m = normalise(rng.standard_normal((n, 128)).astype(np.float32))
    faces = [Face(f"r{i}", f"K{i}", "d", m[i]) for i in range(n)]
    regions = {f"K{i}": Region("P", "One", "") for i in range(n)}
    cfg = replace(SuspectsConfig(), index="hnsw", index_dir=str(tmp_path))
    assert search_period("p", faces, regions, cfg, tmp_path).suspects == []
    loose = replace(cfg, region_threshold=0.35, national_threshold=0.35)
    assert len(search_period("p2", faces, regions, loose, tmp_path).suspects) > 0


_KILLABLE = """
import sys, numpy as np
from pathlib import Path
from edge_hq.national import IndexSpec, national_pass
from edge_hq.suspects import normalise
rng = np.random.default_rng(1)
m = normalise(rng.standard_normal((12000, 128)).astype(np.float32))
m[6000:6050] = normalise(m[:50] + 0.02 * rng.standard_normal((50, 128)).astype(np.float32))
ids = [f"r{i}" for i in range(m.shape[0])]
national_pass(ids, m, 0.6, IndexSpec("flat"), Path(sys.argv[1]), chunk=200)
"""


def _matrix() -> np.ndarray:
    rng = np.random.default_rng(1)
    m = normalise(rng.standard_normal((12000, 128)).astype(np.float32))
    m[6000:6050] = normalise(m[:50] + 0.02 * rng.standard_normal((50, 128)).astype(np.float32))
    return m


@pytest.mark.slow
def test_national_pass_killed_mid_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(state)], cwd=REPO, stderr=subprocess.DEVNULL
    )
    done: list[int] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = json.loads((state / "state.json").read_text())["done"]
            except (OSError, ValueError, KeyError):
                done = []
            if len(done) >= 3:
                break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 3 <= len(done) < 60, f"the child was not caught mid-run: {len(done)} chunks"
    m = _matrix()
    ids = [f"r{i}" for i in range(m.shape[0])]
    seen: list[int] = []
    res = national_pass(ids, m, 0.6, IndexSpec("flat"), state, 200, lambda d, t: seen.append(d))
    assert res.info["resumed_from_chunk"] >= 3
    assert seen[0] >= 3 * 200 and seen[-1] == 12000  # the bar starts where the kill left it
    fresh = national_pass(ids, m, 0.6, IndexSpec("flat"), tmp_path / "fresh", 200)
    assert fresh.info["resumed_from_chunk"] is None
    assert res.pairs.keys() == fresh.pairs.keys()
    assert {(i, i + 6000) for i in range(50)} <= res.pairs.keys()
    # other parameters: the old state is not reused
    again = national_pass(ids, m, 0.61, IndexSpec("flat"), state, 200)
    assert again.info["resumed_from_chunk"] is None


def test_suspects_config_errors_are_clear() -> None:
    base = {"broker": {"tls": False}}
    with pytest.raises(ConfigError, match=r"suspects.index: expected one of ivf, hnsw, flat"):
        parse_hq_config({**base, "suspects": {"index": "annoy"}})
    with pytest.raises(ConfigError, match=r"suspects.region_threshold: expected at most 1.0"):
        parse_hq_config({**base, "suspects": {"region_threshold": 1.5}})
    with pytest.raises(ConfigError, match=r"suspects.national: expected true when region_level"):
        parse_hq_config({**base, "suspects": {"region_level": "none", "national": False}})
    with pytest.raises(ConfigError, match=r"region_level: expected one of district, subdistrict"):
        parse_hq_config({**base, "suspects": {"region_level": "village"}})


def test_regions_csv_bad_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = _hq(tmp_path, str(tmp_path / "hq.db"), capsys)
    bad = tmp_path / "kpm.csv"
    bad.write_text("kpm_id,district\nK1,Sleman\nK1,Bantul\n")
    code, _, err = run(capsys, "hq", "regions", "import", "--csv", str(bad), *cfg)
    assert code == 2 and "line 3: kpm_id: K1 listed in two regions" in err
    bad.write_text("kpm_id,programme\nK1,pkh\n")
    code, _, err = run(capsys, "hq", "regions", "import", "--csv", str(bad), *cfg)
    assert code == 2 and "header: missing district" in err
    code, _, err = run(capsys, "hq", "regions", "import", "--csv", str(tmp_path / "no"), *cfg)
    assert code == 2 and "file not found" in err


def test_gpd_fit_recovers_known_tail_and_inverts() -> None:
    rng = np.random.default_rng(4)
    for xi, sigma in ((0.1, 0.02), (-0.1, 0.03), (0.0, 0.025)):
        u = rng.uniform(size=40_000)
        y = sigma * np.log(1 / u) if xi == 0 else sigma / xi * (u ** (-xi) - 1)
        got_xi, got_sigma = fit_gpd(y)
        assert abs(got_xi - xi) < 0.03 and abs(got_sigma / sigma - 1) < 0.05
    fit = TailFit(u=0.36, p_u=1e-3, xi=-0.04, sigma=0.025, exceedances=5800)
    for fmr in (1e-5, 1e-8, 1e-11):
        assert abs(fit.fmr(fit.threshold(fmr)) / fmr - 1) < 1e-9
    pop = Population()
    # 20M faces, 38 provinces: 100 leads per province, half to each pass
    assert pop.fmr_target("national") == pytest.approx(50 / (20e6 * (20e6 - 1) / 2 / 38))
    assert pop.fmr_target("subdistrict") > pop.fmr_target("district") > pop.fmr_target("national")


@pytest.mark.data
def test_faces_dev_strangers_make_no_group_at_the_chosen_thresholds(tmp_path: Path) -> None:
    """One photo per faces-dev person (1,170 people), all in one district: no group at the
    configured thresholds; at the kiosk-style FMR 1e-4 point (0.4195) strangers do group."""
    from bench.hq_calibrate import MISLABELLED_PHOTOS, SAME_PERSON
    from edge.infer.images import load_image
    from tests.support.faces import dev_faces, identities, photos, pipeline

    dev, pipe = dev_faces(), pipeline()
    alias = {b for _a, b in SAME_PERSON}  # one name of each person listed twice
    faces = []
    for name in identities(1, dev):
        usable = [p for p in photos(name, dev) if f"{name}/{p.name}" not in MISLABELLED_PHOTOS]
        if name in alias or not usable:
            continue
        r = pipe.analyse(load_image(usable[0]), gates=False)
        assert r.embedding is not None, name
        faces.append(Face(name, name, "kiosk", r.embedding))
    assert len(faces) > 1100
    regions = {f.kpm_id: Region("P", "One", "") for f in faces}
    cfg = replace(SuspectsConfig(), index="hnsw")
    res = search_period("dev", faces, regions, cfg, tmp_path)
    assert res.suspects == [], [s.kpm_ids for s in res.suspects]
    old = replace(cfg, region_threshold=0.4195, national=False)
    assert len(search_period("dev-old", faces, regions, old, tmp_path).suspects) > 0
