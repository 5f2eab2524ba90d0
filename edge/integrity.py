"""Is this store the one the kiosk committed to? Checked at start and by `records verify`.

What the store alone cannot show, the signed head can: every record's transaction also
rewrites `meta.head_signed`, the chain's newest (seq, hash) signed with the device key.
Someone with root but without the key can delete rows and rewrite `meta`, but cannot
make a head for a shorter chain; so a chain that ends before its signed head, or a store
with records and no valid head, is truncated or replaced, and the daemon refuses to
append to it (a new record would fork the chain HQ holds).

A store that was lost outright (deleted, zero bytes after a bad SD card) looks like a
new one; the marker file `<state>/edge.chain`, written when the kiosk first signs a
store's head, tells the two apart. An admin who accepts the loss says so with
`edge records init --i-know-the-store-is-lost`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from bansos_contract.utc import iso_ms as utc_iso
from edge.errors import EXIT_MISSING, EdgeError
from edge.records import ChainProblem, RecordInvalid, check_head
from edge.store import Store, StoreIntegrityError

log = logging.getLogger(__name__)

LOST_FLAG = "--i-know-the-store-is-lost"
ADMIN_HINT = (
    f"an admin who accepts this runs `edge records init {LOST_FLAG}` "
    "(or gives the kiosk a new identity with `edge keys init --force`); see README"
)


class StoreLost(EdgeError):
    exit_code = EXIT_MISSING


def marker_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.stem + ".chain")


def write_marker(db_path: Path, device_id: str) -> None:
    path = marker_path(db_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps({"device_id": device_id, "since": utc_iso(time.time())}) + "\n", "utf-8"
    )
    os.replace(tmp, path)


def _store_state(db_path: Path) -> str:
    if not db_path.exists():
        return "missing"
    return "empty" if db_path.stat().st_size == 0 else "present"


def head_problem(store: Store, vk: VerifyKey, device_id: str) -> str | None:
    """Why the store's chain and its signed head disagree, or None (legacy: see below)."""
    found = head_fault(store, vk, device_id)
    return None if found is None else found.reason


def head_fault(store: Store, vk: VerifyKey, device_id: str) -> ChainProblem | None:
    """head_problem as a ChainProblem naming the first seq concerned."""
    raw = store.signed_head()
    seq, head_hash = store.chain_head()
    has_rows = bool(seq or store.record_count() or not store.outbox.is_empty())
    if raw is None:
        if store.get_meta("legacy_unsigned_head") == "1":
            return None  # a store from before signed heads: the daemon signs it at start
        if has_rows:
            return ChainProblem(
                seq,
                "the signed head checkpoint is missing but the store holds records up to seq "
                f"{seq}: meta was rewritten or the rows came from elsewhere",
            )
        return ChainProblem(
            1, "the signed head checkpoint is missing: the store was emptied or replaced"
        )
    try:
        head = check_head(raw, vk, device_id)
    except RecordInvalid as exc:
        return ChainProblem(seq, f"{exc} (the checkpoint is not signed by this device's key)")
    if head["seq"] > seq:
        first = seq + 1
        missing = f"seq {first}" if first == head["seq"] else f"seqs {first}-{head['seq']}"
        return ChainProblem(
            first,
            f"record {missing} missing: the signed head checkpoint ({head['at']}) says the "
            f"chain reached seq {head['seq']}, the store ends at {seq}",
        )
    if head["seq"] < seq:
        return ChainProblem(
            head["seq"] + 1,
            f"records after seq {head['seq']} are not covered by the signed head checkpoint "
            f"(the store holds up to {seq}): written without the device key, or an old "
            "checkpoint was put back",
        )
    if head["hash"] != head_hash:
        return ChainProblem(
            seq, f"seq {seq} is not the record the signed head checkpoint names (hash differs)"
        )
    return None


def open_kiosk_store(db_path: Path, busy_timeout_ms: int, key: SigningKey, device_id: str) -> Store:
    """The store the daemon (or `edge verify --image`) may append to, or StoreLost (exit 3).

    Refuses: a zero-length file; a missing file once this kiosk had a store (marker); pages
    SQLite's quick_check rejects; a chain that ends before its signed head or has none.
    A new kiosk gets a signed head at seq 0; a store from before signed heads gets its
    current head signed once (logged as `head_signed_legacy`).
    """
    state = _store_state(db_path)
    marker = marker_path(db_path)
    had_store = marker.exists()
    if state == "empty" or (state == "missing" and marker.exists()):
        raise StoreLost(
            f"{db_path}: the store is {state} but this kiosk ({device_id}) has written records "
            f"before ({marker} exists): the records not yet acked by HQ, the roster and the "
            f"served ledger are gone; refusing to start a new chain under the same id. "
            + ADMIN_HINT
        )
    store = Store(db_path, busy_timeout_ms)
    try:
        bad = store.quick_check()
        if bad is not None:
            raise StoreLost(
                f"{db_path}: SQLite integrity check failed ({bad}); the store is corrupted. "
                "Restore it from a backup, or " + ADMIN_HINT
            )
        _settle_head(store, key, device_id, had_store)
    except BaseException:
        store.close()
        raise
    if not marker.exists():
        write_marker(db_path, device_id)
    return store


def _settle_head(store: Store, key: SigningKey, device_id: str, had_store: bool) -> None:
    raw = store.signed_head()
    if raw is None:
        seq, _h = store.chain_head()
        # a new store only where this kiosk never had one: an emptied file that some
        # command has since filled with empty tables must not pass for a new kiosk
        fresh = not had_store and not seq and store.record_count() == 0 and store.outbox.is_empty()
        if store.get_meta("legacy_unsigned_head") == "1" or fresh:
            head = store.sign_current_head(key, device_id)
            kind = "head_signed_new" if fresh else "head_signed_legacy"
            store.log_event(kind, seq=head["seq"], device_id=device_id)
            log.info("signed the store's head at seq %d (%s)", head["seq"], kind)
            return
    why = head_problem(store, key.verify_key, device_id)
    if why is not None:
        raise StoreIntegrityError(f"{store.path}: {why}; refusing to append. " + ADMIN_HINT)


def declare_store_lost(
    db_path: Path, busy_timeout_ms: int, key: SigningKey, device_id: str
) -> dict[str, Any]:
    """The admin's decision: keep what is there (or start empty), sign its head, go on.

    A corrupted file is moved aside (`edge.db.corrupt-<time>`, with its -wal/-shm), never
    deleted. Returns what was done, for the command's output and the events table.
    """
    done: dict[str, Any] = {"db": str(db_path), "state": _store_state(db_path)}
    if done["state"] == "empty":
        db_path.unlink()
    elif done["state"] == "present":
        probe = Store(db_path, busy_timeout_ms)
        bad = probe.quick_check()
        probe.close()
        if bad is not None:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            aside = db_path.with_name(f"{db_path.name}.corrupt-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(db_path) + suffix)
                if src.exists():
                    os.replace(src, Path(str(aside) + suffix))
            done["moved_aside"] = str(aside)
    store = Store(db_path, busy_timeout_ms)
    try:
        before = store.signed_head()
        done["previous_head"] = before
        done["problem"] = head_problem(store, key.verify_key, device_id)
        head = store.sign_current_head(key, device_id)
        done["head"] = {"seq": head["seq"], "hash": head["hash"]}
        store.log_event("store_declared_lost", **{k: v for k, v in done.items() if k != "db"})
    finally:
        store.close()
    write_marker(db_path, device_id)
    return done
