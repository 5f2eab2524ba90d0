"""Liveness on the labelled pad-dev set (NUAA prints), through the real command line.

`data` group: needs $BANSOS_DATA/pad-dev (research-only photos, never in the repository).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import run_edge
from tests.support.data import shared_data
from tests.support.helpers import REPO

pytestmark = pytest.mark.data

HALF_A = "0001,0003,0005,0007,0009"
HALF_B = "0002,0004,0006,0008"


def _eval(*extra: str) -> dict:
    pad = shared_data("pad-dev")
    res = run_edge(
        "liveness", "eval", "--bona-fide", str(pad / "bona-fide"), "--attack",
        str(pad / "attack"), "--json", *extra, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def test_no_print_passes_at_the_shipped_threshold(tmp_path):
    plot = tmp_path / "det.png"
    rep = _eval("--plot", str(plot))
    pres = rep["presentation"]
    assert rep["threshold"] == 0.377 and rep["burst"] == 5
    assert pres["attack"] >= 150 and pres["bona_fide"] >= 100
    assert rep["apcer"] == 0.0  # not one print presentation accepted
    assert rep["frame"]["apcer"] <= 0.01
    assert rep["bpcer"] <= 0.05
    assert rep["fta"] <= 0.10
    assert all(f["apcer"] == 0.0 for f in rep["per_folder"]["attack"].values())
    assert plot.stat().st_size > 10_000


def test_threshold_from_half_a_holds_on_half_b():
    cal = _eval("--folders", HALF_A, "--target-bpcer", "0.01")["calibration"]
    assert cal["at_threshold"]["bpcer"] <= 0.01
    t = cal["threshold"]
    check = _eval("--folders", HALF_B, "--threshold", f"{t:.6f}")
    assert check["apcer"] <= 0.01 and check["frame"]["apcer"] <= 0.01
    # BPCER on unseen subjects is reported, not promised: one dim subject (0008) dominates
    assert check["bpcer"] < 0.2


def test_prints_of_enrolled_subjects_never_match_through_the_cli():
    pad = shared_data("pad-dev")
    out = subprocess.run(
        [sys.executable, "-m", "tools.pad_e2e", "--data", str(pad), "--per-subject", "1", "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )  # fmt: skip
    rep = json.loads(out.stdout)
    assert rep["errors"] == [] and rep["attack_matches"] == 0
    assert rep["attack"].get("spoof", 0) == len(rep["subjects"])
    assert rep["bona_fide"].get("match", 0) >= len(rep["subjects"]) - 2
    assert out.returncode == 0
