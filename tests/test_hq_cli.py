"""`edge hq ...` end to end in-process through edge.cli.main (real exit codes, real files)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from edge.cli import cli, main
from edge.records import canonical_json
from edge_hq.checks import check_message
from edge_hq.cli import hq_group
from edge_hq.db import open_database
from edge_hq.keys import load_hq_box
from edge_hq.registry import KeyCache
from edge_hq.store import Incoming, store_batch
from tests.support.helpers import write_toml
from tests.support.hq import SimKiosk, unit_vector

if "hq" not in cli.commands:  # until the lead wires the group into `edge`
    cli.add_command(hq_group)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def hq_toml(tmp_path: Path) -> Path:
    return write_toml(
        tmp_path / "hq.toml",
        {
            "broker": {"tls": False, "port": 1883},
            "database": {"url": str(tmp_path / "hq.db")},
            "keys": {"dir": str(tmp_path / "keys")},
        },
    )


def test_keys_init_writes_private_files_and_refuses_to_overwrite(
    capsys: pytest.CaptureFixture[str], hq_toml: Path, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "hq", "keys", "init", "--hq-config", str(hq_toml), "--json")
    assert code == 0
    pub = json.loads(out)
    for name in ("hq-signing.key", "hq-box.key"):
        assert stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode) == 0o600
    assert len(pub["signing_public_key"]) == 44 and len(pub["sealing_public_key"]) == 44
    code, _, err = run(capsys, "hq", "keys", "init", "--hq-config", str(hq_toml))
    assert code == 2 and "refusing to overwrite" in err
    assert "Traceback" not in err


def test_bad_hq_config_names_file_and_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = write_toml(tmp_path / "bad.toml", {"broker": {"port": 70000, "tls": False}})
    code, _, err = run(capsys, "hq", "device", "list", "--hq-config", str(bad))
    assert code == 2 and f"{bad}: broker.port: expected at most 65535" in err
    tls = write_toml(tmp_path / "tls.toml", {"broker": {"tls": True}})
    code, _, err = run(capsys, "hq", "device", "list", "--hq-config", str(tls))
    assert code == 2 and "broker.ca_file" in err
    unknown = write_toml(tmp_path / "u.toml", {"brokr": {"x": 1}})
    code, _, err = run(capsys, "hq", "device", "list", "--hq-config", str(unknown))
    assert code == 2 and "[brokr]: unknown section" in err
    pgbad = write_toml(
        tmp_path / "pg.toml",
        {"broker": {"tls": False}, "database": {"url": "postgresql://nobody@127.0.0.1:1/none"}},
    )
    code, _, err = run(capsys, "hq", "device", "list", "--hq-config", str(pgbad))
    assert code == 3 and "cannot connect to PostgreSQL" in err
    code, _, err = run(capsys, "hq", "device", "list", "--hq-config", str(tmp_path / "none.toml"))
    assert code == 2 and "file not found" in err


def test_device_review_and_report(
    capsys: pytest.CaptureFixture[str], hq_toml: Path, tmp_path: Path
) -> None:
    assert run(capsys, "hq", "keys", "init", "--hq-config", str(hq_toml))[0] == 0
    box = load_hq_box(tmp_path / "keys")
    kiosk = SimKiosk(box.public_key)
    cfg = ["--hq-config", str(hq_toml)]
    code, out, _ = run(
        capsys, "hq", "device", "add", kiosk.device_id, kiosk.public_key, "--label", "van 3", *cfg
    )
    assert code == 0 and kiosk.device_id in out
    code, _, err = run(
        capsys, "hq", "device", "add", "kiosk-0000000000000000", kiosk.public_key, *cfg
    )
    assert code == 2 and "does not belong to this key" in err
    code, out, _ = run(capsys, "hq", "device", "list", "--json", *cfg)
    assert [d["label"] for d in json.loads(out)] == ["van 3"]

    rng = np.random.default_rng(5)
    face = unit_vector(rng)
    recs = [kiosk.record(kpm_id="A", embedding=face), kiosk.record(kpm_id="B", embedding=face)]
    db = open_database(str(tmp_path / "hq.db"))
    keys = KeyCache(db)
    store_batch(
        db,
        [
            Incoming(
                "t",
                kiosk.device_id,
                canonical_json(r),
                check_message(canonical_json(r), kiosk.device_id, keys),
            )
            for r in recs
        ],
    )

    code, _, err = run(capsys, "hq", "review", recs[0]["id"], *cfg)
    assert code == 2 and "--reviewer" in err
    crop = tmp_path / "crop.jpg"
    code, out, _ = run(
        capsys,
        "hq",
        "review",
        recs[0]["id"],
        "--reviewer",
        "ana",
        "--out",
        str(crop),
        "--json",
        *cfg,
    )
    assert code == 0
    info = json.loads(out)
    assert info["embedding_dim"] == 128 and "embedding" not in json.dumps(info).replace(
        "embedding_dim", ""
    )
    assert crop.read_bytes().startswith(b"\xff\xd8")
    assert stat.S_IMODE(crop.stat().st_mode) == 0o600
    code, _, err = run(capsys, "hq", "review", "no-such-id", "--reviewer", "ana", *cfg)
    assert code == 2 and "no stored record" in err

    code, out, _ = run(capsys, "hq", "report", "--json", "--actor", "auditor", *cfg)
    assert code == 0
    rep = json.loads(out)
    assert rep["devices"][kiosk.device_id]["records"] == 2
    assert rep["suspects"][0]["kpm_ids"] == ["A", "B"]
    assert rep["suspect_search"]["national_threshold"] == 0.8493
    assert rep["suspects"][0]["found_by"] == ["national", "region"]
    code, out, _ = run(capsys, "hq", "report", "--no-suspects", *cfg)
    assert code == 0 and "suspects" not in out and kiosk.device_id in out
    actions = db.rows("SELECT actor, action, record_id FROM audit ORDER BY id")
    assert actions[0] == ("ana", "review", recs[0]["id"])
    assert ("auditor", "report-1:N", None) in actions
    db.close()


def test_roster_build_needs_output_and_valid_csv(
    capsys: pytest.CaptureFixture[str], hq_toml: Path, tmp_path: Path
) -> None:
    cfg = ["--hq-config", str(hq_toml)]
    csv = tmp_path / "kpm.csv"
    csv.write_text("kpm_id,programme,period\nK1,bansos,2026-11\n")
    (tmp_path / "photos").mkdir()
    code, _, err = run(
        capsys,
        "hq",
        "roster",
        "build",
        "--csv",
        str(csv),
        "--photos",
        str(tmp_path / "photos"),
        *cfg,
    )
    assert code == 2 and "--out" in err
    code, _, err = run(
        capsys, "hq", "roster", "build", "--csv", str(csv), "--photos", str(tmp_path / "photos"),
        "--out", str(tmp_path / "b.json"), *cfg,
    )  # fmt: skip
    assert code == 2 and f"{csv}: line 2: programme: expected one of sembako, pkh" in err


def test_ingest_with_a_missing_certificate_says_which(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    toml = write_toml(
        tmp_path / "hq.toml",
        {
            "broker": {
                "ca_file": str(tmp_path / "ca.crt"),
                "cert_file": "c.crt",
                "key_file": "c.key",
            },
            "database": {"url": str(tmp_path / "hq.db")},
        },
    )
    code, _, err = run(capsys, "hq", "ingest", "--max-seconds", "1", "--hq-config", str(toml))
    assert code == 2 and f"{toml}: broker.ca_file: no such file" in err
    assert "Traceback" not in err
