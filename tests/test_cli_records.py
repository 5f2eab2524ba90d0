"""Tamper tests through the real CLI: `edge records verify` exits 1 and names the first bad seq."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edge.keys import b64
from edge.records import record_hash, signed_bytes
from tests.conftest import HqKeys, WriteConfig, run_edge
from tests.roster_fixtures import make_state

N = 12

Tamper = Callable[[sqlite3.Connection, SigningKey], None]


@pytest.fixture
def kiosk(write_config: WriteConfig, tmp_path: Path, hq_keys: HqKeys) -> tuple[Path, SigningKey]:
    cfg = write_config()
    key = make_state(tmp_path / "state", N, hq_keys.box.public_key)
    return cfg, key


def _db(cfg: Path) -> sqlite3.Connection:
    # a plain connection, foreign keys off: what someone editing the file by hand would use
    return sqlite3.connect(cfg.parent / "state" / "edge.db", isolation_level=None)


def _verify(cfg: Path) -> tuple[int, dict, str]:
    res = run_edge("records", "verify", "--config", str(cfg), "--json")
    assert "Traceback" not in res.stderr
    return res.returncode, json.loads(res.stdout), res.stderr


def _body(conn: sqlite3.Connection, seq: int) -> str:
    return str(conn.execute("SELECT body FROM records WHERE seq = ?", (seq,)).fetchone()[0])


def _set_body(conn: sqlite3.Connection, seq: int, body: str) -> None:
    conn.execute("UPDATE records SET body = ? WHERE seq = ?", (body, seq))


def test_untouched_store_verifies(kiosk: tuple[Path, SigningKey]) -> None:
    cfg, _ = kiosk
    code, out, _ = _verify(cfg)
    assert code == 0 and out == {"ok": True, "checked": N, "first_bad_seq": None, "reason": None}
    res = run_edge("records", "verify", "--config", str(cfg))
    assert res.returncode == 0 and f"OK: {N} records" in res.stdout


def flip_byte(conn: sqlite3.Connection, key: SigningKey) -> None:
    body = bytearray(_body(conn, 5).encode())
    pos = body.index(b'"kpm_id":"') + len('"kpm_id":"') + 6
    body[pos] ^= 0x01  # an ASCII digit becomes another ASCII character
    _set_body(conn, 5, body.decode())


def flip_byte_in_signature(conn: sqlite3.Connection, key: SigningKey) -> None:
    body = _body(conn, 5)
    rec = json.loads(body)
    sig = bytearray(rec["sig"].encode())
    sig[4] = ord("A") if sig[4] != ord("A") else ord("B")
    rec["sig"] = sig.decode()
    _set_body(conn, 5, json.dumps(rec, sort_keys=True, separators=(",", ":")))


def flip_byte_breaking_json(conn: sqlite3.Connection, key: SigningKey) -> None:
    body = _body(conn, 5)
    _set_body(conn, 5, "[" + body[1:])


def delete_middle(conn: sqlite3.Connection, key: SigningKey) -> None:
    conn.execute("DELETE FROM records WHERE seq = 5")


def delete_middle_with_outbox(conn: sqlite3.Connection, key: SigningKey) -> None:
    conn.execute("DELETE FROM outbox WHERE seq = 5")
    conn.execute("DELETE FROM records WHERE seq = 5")


def swap_rows(conn: sqlite3.Connection, key: SigningKey) -> None:
    a, b = _body(conn, 5), _body(conn, 6)
    _set_body(conn, 5, b)
    _set_body(conn, 6, a)


def resign_broken_prev_hash(conn: sqlite3.Connection, key: SigningKey) -> None:
    rec = json.loads(_body(conn, 5))
    rec["prev_hash"] = "ab" * 32
    rec["sig"] = b64(key.sign(signed_bytes(rec)).signature)
    _set_body(conn, 5, json.dumps(rec, sort_keys=True, separators=(",", ":")))


def resign_changed_decision(conn: sqlite3.Connection, key: SigningKey) -> None:
    # a forger with the device key rewrites seq 5 and its stored hash; seq 6 no longer links
    rec = json.loads(_body(conn, 5))
    rec["decision"] = "manual" if rec["decision"] != "manual" else "match"
    rec["sig"] = b64(key.sign(signed_bytes(rec)).signature)
    conn.execute(
        "UPDATE records SET body = ?, hash = ? WHERE seq = 5",
        (json.dumps(rec, sort_keys=True, separators=(",", ":")), record_hash(rec)),
    )


CASES: list[tuple[Tamper, int, str]] = [
    (flip_byte, 5, "bad signature"),
    (flip_byte_in_signature, 5, "bad signature"),
    (flip_byte_breaking_json, 5, "not valid JSON"),
    (delete_middle, 5, "missing"),
    (delete_middle_with_outbox, 5, "missing"),
    (swap_rows, 5, "body of seq 6"),
    (resign_broken_prev_hash, 5, "prev_hash"),
    (resign_changed_decision, 6, "prev_hash"),
]


@pytest.mark.parametrize(("tamper", "bad_seq", "reason"), CASES, ids=[c[0].__name__ for c in CASES])
def test_tampering_is_named(
    kiosk: tuple[Path, SigningKey], tamper: Tamper, bad_seq: int, reason: str
) -> None:
    cfg, key = kiosk
    conn = _db(cfg)
    tamper(conn, key)
    conn.close()
    code, out, _ = _verify(cfg)
    assert code == 1
    assert out["ok"] is False and out["first_bad_seq"] == bad_seq, out
    assert reason in out["reason"]
    assert out["checked"] == bad_seq - 1


def test_deleted_last_row_is_noticed(kiosk: tuple[Path, SigningKey]) -> None:
    cfg, _ = kiosk
    conn = _db(cfg)
    conn.execute("DELETE FROM records WHERE seq = ?", (N,))
    conn.close()
    res = run_edge("records", "verify", "--config", str(cfg))
    assert res.returncode == 1
    assert f"FAILED at seq {N}" in res.stdout and "missing" in res.stdout
    # even with its outbox row gone, the store's head still remembers it
    conn = _db(cfg)
    conn.execute("DELETE FROM outbox WHERE seq = ?", (N,))
    conn.close()
    code, out, _ = _verify(cfg)
    assert code == 1 and out["first_bad_seq"] == N


def test_stale_stored_hash_is_noticed(kiosk: tuple[Path, SigningKey]) -> None:
    # re-signed content but the hash column left alone: caught at that row, not the next
    cfg, key = kiosk
    conn = _db(cfg)
    rec = json.loads(_body(conn, 3))
    rec["officer_id"] = "officer-8"
    rec["sig"] = b64(key.sign(signed_bytes(rec)).signature)
    _set_body(conn, 3, json.dumps(rec, sort_keys=True, separators=(",", ":")))
    conn.close()
    code, out, _ = _verify(cfg)
    assert code == 1 and out["first_bad_seq"] == 3 and "stored hash" in out["reason"]


def test_verify_with_other_public_key_fails(kiosk: tuple[Path, SigningKey]) -> None:
    cfg, key = kiosk
    other = b64(bytes(SigningKey.generate().verify_key))
    res = run_edge("records", "verify", "--config", str(cfg), "--public-key", other)
    assert res.returncode == 1 and "FAILED at seq 1" in res.stdout
    res = run_edge(
        "records", "verify", "--config", str(cfg), "--public-key", b64(bytes(key.verify_key))
    )
    assert res.returncode == 0
    res = run_edge("records", "verify", "--config", str(cfg), "--public-key", "not-base64!")
    assert res.returncode == 2 and "--public-key" in res.stderr and "Traceback" not in res.stderr


def test_list_and_export(kiosk: tuple[Path, SigningKey]) -> None:
    cfg, key = kiosk
    res = run_edge("records", "list", "--config", str(cfg), "--json", "--limit", "5")
    assert res.returncode == 0
    items = json.loads(res.stdout)
    assert [i["seq"] for i in items] == [12, 11, 10, 9, 8]
    assert {i["outbox"] for i in items} == {"pending"}
    res = run_edge("records", "export", "--config", str(cfg), "--json")
    assert res.returncode == 0
    exported = json.loads(res.stdout)
    assert [r["seq"] for r in exported] == list(range(1, N + 1))
    # exactly as signed: the signature checks over the exported record
    for r in exported:
        key.verify_key.verify(signed_bytes(r), __import__("base64").b64decode(r["sig"]))
    res = run_edge("records", "export", "--config", str(cfg))
    lines = res.stdout.splitlines()
    assert len(lines) == N and json.loads(lines[0]) == exported[0]


def test_random_byte_flips_are_caught_at_their_seq(tmp_path: Path, seed: int) -> None:
    """Any single changed byte in any stored body is named at that row's seq."""
    from edge.cli.records_cmd import audit_store
    from edge.store import Store

    key = make_state(tmp_path, 15)
    rng = random.Random(seed)
    store = Store(tmp_path / "edge.db")
    original = dict(store.iter_bodies())
    try:
        for _ in range(150):
            seq = rng.randint(1, 15)
            body = bytearray(original[seq].encode("utf-8"))
            pos = rng.randrange(len(body))
            body[pos] ^= 1 << rng.randrange(7)  # stays ASCII, so the text column stays text
            store.conn.execute("UPDATE records SET body = ? WHERE seq = ?", (body.decode(), seq))
            count, problem = audit_store(store, key.verify_key)
            assert problem is not None and problem.seq == seq, (seq, pos, problem)
            assert count == seq - 1
            store.conn.execute("UPDATE records SET body = ? WHERE seq = ?", (original[seq], seq))
        assert audit_store(store, key.verify_key) == (15, None)
    finally:
        store.close()


def test_verify_after_purge_starts_at_the_anchor(kiosk: tuple[Path, SigningKey]) -> None:
    from edge.store import Store

    cfg, _ = kiosk
    store = Store(cfg.parent / "state" / "edge.db")
    store.conn.execute("UPDATE outbox SET state = 'acked', acked_at = 100 WHERE seq <= 4")
    assert store.purge_acked(acked_before=1000) == 4
    store.close()
    code, out, _ = _verify(cfg)
    assert code == 0 and out["checked"] == N - 4
    # a forged anchor no longer matches seq 5's prev_hash
    conn = _db(cfg)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'anchor_hash'", ("cd" * 32,))
    conn.close()
    code, out, _ = _verify(cfg)
    assert code == 1 and out["first_bad_seq"] == 5 and "prev_hash" in out["reason"]


def test_rewritten_newest_record_is_noticed(kiosk: tuple[Path, SigningKey]) -> None:
    # a forger with the device key re-signs the newest record and its hash column
    cfg, key = kiosk
    conn = _db(cfg)
    rec = json.loads(_body(conn, N))
    rec["decision"] = "manual" if rec["decision"] != "manual" else "match"
    rec["sig"] = b64(key.sign(signed_bytes(rec)).signature)
    conn.execute(
        "UPDATE records SET body = ?, hash = ? WHERE seq = ?",
        (json.dumps(rec, sort_keys=True, separators=(",", ":")), record_hash(rec), N),
    )
    conn.close()
    code, out, _ = _verify(cfg)
    assert code == 1 and out["first_bad_seq"] == N and "newest record" in out["reason"]
