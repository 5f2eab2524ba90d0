"""Kiosk integrity (issue 19): truncation, a lost or corrupted store, attempts, periods.

Real SQLite files, real Ed25519 keys, the real `edge` command; the rows are deleted and
the pages corrupted the way someone with root (but without the device key) or a failing
SD card would.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_hq.roster_build import parse_kpm_csv
from nacl.signing import SigningKey

from edge.errors import BadInput
from edge.keys import device_id_for, unb64
from edge.records import parse_record, record_hash, verify_chain
from edge.roster import Bundle, RosterEntry, encode_template, parse_bundle
from edge.store import Store
from edge.verification import BadRequest, Verifier, parse_request
from tests.conftest import HqKeys, WriteConfig, run_edge
from tests.roster_fixtures import bundle_body, make_state, signed_bundle, write_json
from tests.support.faces import OTHER, PERSON, photos
from tests.test_cli_records import _db
from tests.test_verification import FixedDecider, Outcome

N = 6


@pytest.fixture
def kiosk(write_config: WriteConfig, tmp_path: Path, hq_keys: HqKeys) -> tuple[Path, SigningKey]:
    cfg = write_config()
    key = make_state(tmp_path / "state", N, hq_keys.box.public_key)
    return cfg, key


def _verify(cfg: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    res = run_edge("records", "verify", "--config", str(cfg), "--json", *extra)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)


def _truncate_one(conn: sqlite3.Connection) -> None:
    """Delete the newest record and its outbox row, set meta's head back one step."""
    conn.execute("DELETE FROM outbox WHERE seq = ?", (N,))
    conn.execute("DELETE FROM records WHERE seq = ?", (N,))
    conn.execute("DELETE FROM served WHERE seq = ?", (N,))
    prev = conn.execute("SELECT hash FROM records WHERE seq = ?", (N - 1,)).fetchone()[0]
    conn.execute("UPDATE meta SET value = ? WHERE key = 'head_seq'", (str(N - 1),))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'head_hash'", (prev,))


# -- 1. truncation is evident ----------------------------------------------------------
def test_truncated_tail_fails_verify(kiosk: tuple[Path, SigningKey]) -> None:
    cfg, key = kiosk
    assert _verify(cfg)[0] == 0
    with _db(cfg) as conn:
        _truncate_one(conn)
    code, out = _verify(cfg)
    assert code == 1 and out["first_bad_seq"] == N, out
    assert f"seq {N} missing" in out["reason"] and "signed head" in out["reason"]
    # the same with only the public key (an auditor's copy of the store)
    pub = __import__("edge.keys", fromlist=["b64"]).b64(bytes(key.verify_key))
    code, out = _verify(cfg, "--public-key", pub)
    assert code == 1 and out["first_bad_seq"] == N


@pytest.mark.parametrize("also_meta", [False, True], ids=["rows", "rows-and-meta"])
def test_deleting_every_row_fails_verify(kiosk: tuple[Path, SigningKey], also_meta: bool) -> None:
    cfg, _key = kiosk
    with _db(cfg) as conn:
        for table in ("outbox", "served", "records") + (("meta",) if also_meta else ()):
            conn.execute(f"DELETE FROM {table}")
    code, out = _verify(cfg)
    assert code == 1 and out["checked"] == 0, out
    assert "signed head" in out["reason"] or not also_meta
    res = run_edge("records", "verify", "--config", str(cfg))
    assert res.returncode == 1 and "OK" not in res.stdout and "FAILED" in res.stdout


def test_forged_head_without_the_key_is_refused(kiosk: tuple[Path, SigningKey]) -> None:
    """Root without the device key signs a head for the shorter chain with another key."""
    cfg, _key = kiosk
    from edge.records import canonical_json, sign_head

    with _db(cfg) as conn:
        _truncate_one(conn)
        h = conn.execute("SELECT hash FROM records WHERE seq = ?", (N - 1,)).fetchone()[0]
        fake = sign_head(SigningKey.generate(), "kiosk-0000000000000000", N - 1, h, 0.0)
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'head_signed'", (canonical_json(fake).decode(),)
        )
    code, out = _verify(cfg)
    assert code == 1 and "signed head" in out["reason"]


def test_daemon_refuses_a_truncated_store(kiosk: tuple[Path, SigningKey]) -> None:
    cfg, _key = kiosk
    with _db(cfg) as conn:
        _truncate_one(conn)
    res = run_edge("run", "--config", str(cfg), timeout=60)
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr and f"seq {N} missing" in res.stderr
    assert "--i-know-the-store-is-lost" in res.stderr
    # the admin's decision: accept, sign the head, go on
    res = run_edge("records", "init", "--config", str(cfg))
    assert res.returncode == 2 and "--i-know-the-store-is-lost" in res.stderr
    res = run_edge("records", "init", "--i-know-the-store-is-lost", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert _verify(cfg)[0] == 0


# -- 2. a lost or corrupted store stops the daemon ------------------------------------
def _run_refused(cfg: Path, *expect: str) -> None:
    res = run_edge("run", "--config", str(cfg), timeout=60)
    assert res.returncode == 3, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    for text in expect:
        assert text in res.stderr, res.stderr


def test_zero_length_store(kiosk: tuple[Path, SigningKey]) -> None:
    cfg, key = kiosk
    db = cfg.parent / "state" / "edge.db"
    from edge.integrity import open_kiosk_store

    open_kiosk_store(db, 5000, key, device_id_for(key.verify_key)).close()  # as a start does
    db.write_bytes(b"")
    _run_refused(cfg, "store is empty", "--i-know-the-store-is-lost")
    code, out = _verify(cfg)
    assert code == 1 and "empty (0 bytes)" in out["reason"], out
    res = run_edge("records", "verify", "--config", str(cfg))
    assert res.returncode == 1 and "FAILED at seq 1" in res.stdout and "OK" not in res.stdout
    assert db.stat().st_size == 0  # nothing was written over it
    # a store emptied and since filled with empty tables is not a new kiosk either
    Store(db).close()
    code, out = _verify(cfg)
    assert code == 1 and "signed head" in out["reason"], out
    _run_refused(cfg, "signed head checkpoint is missing")


def test_missing_store_after_records(kiosk: tuple[Path, SigningKey], tmp_path: Path) -> None:
    """A kiosk that ran (marker beside the store) and lost edge.db does not start afresh."""
    cfg, key = kiosk
    from edge.integrity import open_kiosk_store

    db = cfg.parent / "state" / "edge.db"
    open_kiosk_store(db, 5000, key, device_id_for(key.verify_key)).close()  # as a start does
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    _run_refused(cfg, "store is missing", "--i-know-the-store-is-lost")
    assert not db.exists()


def test_new_kiosk_starts_and_signs_seq_zero(tmp_path: Path) -> None:
    from edge.integrity import head_problem, open_kiosk_store

    key = SigningKey.generate()
    did = device_id_for(key.verify_key)
    store = open_kiosk_store(tmp_path / "edge.db", 5000, key, did)
    head = store.signed_head()
    assert head is not None and head["seq"] == 0
    assert head_problem(store, key.verify_key, did) is None
    store.close()
    # and it opens again
    open_kiosk_store(tmp_path / "edge.db", 5000, key, did).close()


def _corrupt(db: Path) -> None:
    conn = sqlite3.connect(db)
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records'").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xff" * 64)


def test_corrupted_pages_stop_the_daemon(kiosk: tuple[Path, SigningKey]) -> None:
    cfg, _key = kiosk
    db = cfg.parent / "state" / "edge.db"
    _corrupt(db)
    _run_refused(cfg, "integrity check failed")
    res = run_edge("records", "init", "--i-know-the-store-is-lost", "--config", str(cfg))
    assert res.returncode == 0 and "moved aside" in res.stdout, res.stderr
    assert list(db.parent.glob("edge.db.corrupt-*"))  # kept for forensics, never deleted
    assert _verify(cfg)[0] == 0


def test_health_fails_on_corruption_while_running(kiosk: tuple[Path, SigningKey]) -> None:
    """The daemon's periodic housekeeping check (Daemon.check_store) on a real file."""
    from edge.daemon import Daemon

    cfg_path, _key = kiosk
    from edge.config import load_config

    d = Daemon(load_config(cfg_path))
    assert d.check_store() is None and "store" not in " ".join(d.health())
    d.store.close()
    _corrupt(cfg_path.parent / "state" / "edge.db")
    d.store = Store(cfg_path.parent / "state" / "edge.db")
    assert d.check_store() is not None
    assert any("integrity check" in p for p in d.health())
    d.state = "ready"
    d.verifier = object()  # type: ignore[assignment]
    code, body = d.verify({"kpm_id": "KPM-1", "officer_id": "o"})
    assert code == 503 and "integrity" in body["error"]
    d.store.close()


# -- 4. face attempts are counted in the store, for every caller -----------------------
def _verifier(store: Store, key: SigningKey, **kw: Any) -> tuple[Verifier, FixedDecider]:
    decider = FixedDecider()
    v = Verifier(
        store=store,
        decider=decider,
        burst=lambda n: [np.zeros((8, 8, 3), np.uint8)] * n,
        burst_frames=4,
        where=lambda place: (None, "unknown"),
        when=lambda: (1_795_000_000.0, "gps"),
        key=key,
        device_id=device_id_for(key.verify_key),
        hq_box_key=None,
        limits=None,
        **kw,
    )
    return v, decider


def _one_kpm_store(path: Path) -> Store:
    store = Store(path)
    t = unb64(encode_template(np.ones(128, dtype=np.float32) / np.sqrt(128)))
    entry = RosterEntry("KPM-1", "sembako", "2026-11", (t,), None)
    store.import_bundle(Bundle("b1", "2026-11-01T00:00:00Z", "ab" * 32, "*", (entry,), {}))
    return store


def test_attempt_limit_survives_a_restart_and_binds_every_caller(tmp_path: Path) -> None:
    from edge.verification import AttemptsUsed

    key = SigningKey.generate()
    store = _one_kpm_store(tmp_path / "edge.db")
    v, decider = _verifier(store, key, max_attempts=2)
    decider.outcome = Outcome("no_match", score=0.1)
    ask = {"kpm_id": "KPM-1", "officer_id": "officer-7"}
    assert [v.verify(parse_request(ask))["decision"] for _ in range(2)] == ["no_match"] * 2
    with pytest.raises(AttemptsUsed, match="2 face attempts used"):
        v.verify(parse_request(ask))
    assert decider.calls == 2 and store.record_count() == 2
    store.close()
    # a restart (new store object, new verifier): still used up
    store = Store(tmp_path / "edge.db")
    v, decider = _verifier(store, key, max_attempts=2)
    with pytest.raises(AttemptsUsed):
        v.verify(parse_request(ask))
    assert decider.calls == 0
    assert store.attempts_used("officer-7", "KPM-1", "sembako", "2026-11") == 2
    # another officer has their own attempts; the manual route stays open
    decider.outcome = Outcome("no_match", score=0.1)
    assert v.verify(parse_request({**ask, "officer_id": "officer-8"}))["decision"] == "no_match"
    manual = v.verify(parse_request({**ask, "manual_reason": "KTP checked, face scarred"}))
    assert manual["decision"] == "manual"
    store.close()


def test_attempt_limit_in_the_cli_without_a_daemon(
    write_config: WriteConfig, hq_keys: HqKeys, tmp_path: Path
) -> None:
    """`edge verify --image` (real models, real store): no face check past ui.max_attempts."""
    from edge_hq.roster_build import KpmRow, build_bundle

    from edge.config import FaceConfig
    from edge.infer.pipeline import FacePipeline, enroll_template

    cfg = write_config(ui={"max_attempts": 2})
    assert run_edge("keys", "init", "--config", str(cfg)).returncode == 0
    pipeline = FacePipeline.from_config(FaceConfig())
    template = enroll_template(pipeline, [photos(OTHER)[0]])
    bundle = build_bundle(
        [KpmRow("KPM-X", "sembako", "2026-11", None, 2)], {"KPM-X": template},
        pipeline.embedder_sha256, hq_keys.signing, window=None,
    )  # fmt: skip
    path = write_json(tmp_path / "bundle.json", bundle)
    assert run_edge("roster", "import", str(path), "--config", str(cfg)).returncode == 0
    image = str(photos(PERSON)[1])  # somebody else's face: no_match
    ask = ("verify", "--kpm", "KPM-X", "--officer", "officer-7", "--image", image)
    for _ in range(2):
        res = run_edge(*ask, "--config", str(cfg), "--json")
        assert res.returncode == 1 and json.loads(res.stdout)["decision"] == "no_match"
    res = run_edge(*ask, "--config", str(cfg))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "2 face attempts used" in res.stderr, (res.stdout, res.stderr)
    with _db(cfg) as conn:
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 2


# -- 6. periods are YYYY-MM everywhere they enter ------------------------------------
def test_period_must_be_a_month() -> None:
    with pytest.raises(BadInput, match=r"line 2: period: expected a period YYYY-MM"):
        parse_kpm_csv("kpm_id,programme,period\nKPM-1,sembako,December\n", "kpm.csv")
    for bad in ("December", "2026-13", "2026-1", "26-11"):
        body = bundle_body(1)
        body["entries"][0]["period"] = bad
        with pytest.raises(BadInput, match=r"entries\[0\]\.period: expected a period"):
            parse_bundle(body, "b.json")
        with pytest.raises(BadRequest, match="period: expected a period"):
            parse_request({"kpm_id": "K", "officer_id": "o", "period": bad})
    assert parse_kpm_csv("kpm_id,programme,period\nKPM-1,pkh,2026-11\n")[0].period == "2026-11"


def test_periods_compare_as_months(tmp_path: Path) -> None:
    """A store holding a legacy free-text period still serves the newest real month."""
    store = _one_kpm_store(tmp_path / "edge.db")
    t = json.dumps([encode_template(np.ones(128, dtype=np.float32))])
    store.conn.execute(
        "INSERT INTO roster (kpm_id, programme, period, bundle_id, templates) VALUES"
        " ('KPM-2', 'sembako', 'December', 'b1', ?), ('KPM-3', 'sembako', '2026-09', 'b1', ?)",
        (t, t),
    )
    assert store.current_periods(1_795_000_000.0) == {"sembako": "2026-11"}
    store.close()


# -- 7. a not_eligible record names only what was asked -------------------------------
def test_unknown_kpm_record_names_no_programme_it_was_never_listed_for(tmp_path: Path) -> None:
    key = SigningKey.generate()
    store = _one_kpm_store(tmp_path / "edge.db")
    v, _ = _verifier(store, key)
    a = v.verify(parse_request({"kpm_id": "KPM-404", "officer_id": "o"}))
    b = v.verify(parse_request({"kpm_id": "KPM-404", "officer_id": "o", "programme": "pkh"}))
    assert (a["decision"], a["programme"], a["period"]) == ("not_eligible", "unknown", "2026-11")
    assert (b["programme"], b["period"]) == ("pkh", "unknown")  # the kiosk serves no pkh
    records = list(store.iter_records())
    assert verify_chain(records, key.verify_key) == (2, None)
    for r in records:  # HQ's strict parse accepts them
        parse_record(json.dumps(r).encode())
        assert record_hash(r)
    store.close()


# -- 5. device-specific rosters need the device's key ---------------------------------
def _kiosk_model() -> str:
    from edge.infer.manifest import load_manifest

    return load_manifest("").embedder.sha256


def test_roster_import_without_device_key(write_config: WriteConfig, hq_keys: HqKeys) -> None:
    cfg = write_config()
    bundle = signed_bundle(
        hq_keys.signing, device_id="kiosk-0123456789abcdef", model=_kiosk_model()
    )
    path = write_json(cfg.parent / "bundle.json", bundle)
    res = run_edge("roster", "import", str(path), "--config", str(cfg))
    assert res.returncode == 3 and "Traceback" not in res.stderr, res.stderr
    assert "kiosk-0123456789abcdef" in res.stderr and "keys init" in res.stderr
    assert not (cfg.parent / "state" / "edge.db").exists()


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("van-7", "not a kiosk id"),
        ("kiosk-0123456789abcdef", "not registered at HQ"),
    ],
)
def test_roster_build_refuses_unknown_devices(tmp_path: Path, device: str, message: str) -> None:
    from tests.support.helpers import write_toml

    toml = write_toml(
        tmp_path / "hq.toml",
        {
            "broker": {"tls": False},
            "database": {"url": str(tmp_path / "hq.db")},
            "keys": {"dir": str(tmp_path / "k")},
        },
    )
    assert run_edge("hq", "keys", "init", "--hq-config", str(toml)).returncode == 0
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "KPM-A.jpg").symlink_to(photos(PERSON)[0])  # buildable as such
    csv = tmp_path / "kpm.csv"
    csv.write_text("kpm_id,programme,period\nKPM-A,sembako,2026-11\n")
    res = run_edge(
        "hq", "roster", "build", "--csv", str(csv), "--photos", str(tmp_path / "photos"),
        "--device", device, "--out", str(tmp_path / "b.json"), "--hq-config", str(toml),
    )  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert device in res.stderr and message in res.stderr
    assert not (tmp_path / "b.json").exists()


# -- 3. upgrading a store that already holds overrides ---------------------------------
def test_migration_numbers_existing_handovers_and_signs_the_legacy_head(tmp_path: Path) -> None:
    """A store from before 006 holding a match and a manual override of it (two served rows
    for one KPM and period, legitimately) upgrades; a third plain handover is refused."""
    from edge.integrity import head_problem, open_kiosk_store
    from edge.migrations import MIGRATIONS, migrate
    from edge.store import connect
    from tests.roster_fixtures import make_verification, record_builder

    path = tmp_path / "edge.db"
    conn = connect(path)
    migrate(conn, MIGRATIONS[:5])
    conn.close()
    key = SigningKey.generate()
    did = device_id_for(key.verify_key)
    # the old release: plain Store.append without the served constraint or a signed head
    old = sqlite3.connect(path, isolation_level=None)
    rows: list[dict[str, str]] = []
    for i, decision in enumerate(("match", "already_served", "manual"), start=1):
        v = dataclasses.replace(make_verification(1, decision=decision), captured_at=1.79e9 + i)
        prev = rows[-1]["h"] if rows else "0" * 64
        rec = record_builder(v, did, key)(i, prev)
        rows.append({"h": record_hash(rec)})
        body = json.dumps(rec, sort_keys=True, separators=(",", ":"))
        old.execute(
            "INSERT INTO records (seq, id, captured_at, kpm_id, programme, period, decision,"
            " hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (i, rec["id"], rec["captured_at"], rec["kpm_id"], rec["programme"], rec["period"],
             decision, record_hash(rec), body),
        )  # fmt: skip
        if decision in ("match", "manual"):
            old.execute(
                "INSERT INTO served (record_id, kpm_id, programme, period, seq, device_id,"
                " captured_at, decision, geo, geofence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                (rec["id"], rec["kpm_id"], rec["programme"], rec["period"], i, did,
                 rec["captured_at"], decision, "inside"),
            )  # fmt: skip
    old.close()
    store = open_kiosk_store(path, 5000, key, did)  # migrates, then signs the legacy head
    numbers = store.conn.execute("SELECT seq, override FROM served ORDER BY seq").fetchall()
    assert numbers == [(1, 0), (3, 1)]
    head = store.signed_head()
    assert (
        head is not None and head["seq"] == 3 and head_problem(store, key.verify_key, did) is None
    )
    assert store.events(5)[0]["kind"] == "head_signed_legacy"
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        store.append(record_builder(make_verification(1), did, key), head_key=key)
    assert store.record_count() == 3
    store.close()
