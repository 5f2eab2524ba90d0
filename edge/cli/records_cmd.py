"""`edge records list|verify|export`: read and audit the local record chain."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from nacl.signing import VerifyKey

from edge.cli.common import config_option, emit_json, get_config, json_option
from edge.errors import EXIT_NEGATIVE, BadInput, DeviceMissing
from edge.keys import device_id_for, load_signing_key, verify_key_from_b64
from edge.records import ChainProblem, record_hash, verify_chain
from edge.store import Store


def open_store() -> Store:
    """The existing store; reading commands never create an empty database by accident."""
    cfg = get_config()
    if not cfg.device.db_path.exists():
        raise DeviceMissing(
            f"{cfg.device.db_path}: no database yet (the daemon or `edge verify` creates it)"
        )
    if cfg.device.db_path.stat().st_size == 0:
        # opening would write an empty schema into it; a zero-byte store is a lost one
        raise DeviceMissing(
            f"{cfg.device.db_path}: the store is empty (0 bytes): its records, roster and "
            "served ledger are lost; `edge run` refuses it (see README, lost store)"
        )
    return Store(cfg.device.db_path, cfg.store.busy_timeout_ms)


@click.group("records")
def records_group() -> None:
    """List, verify and export the signed records."""


@records_group.command("list")
@config_option
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
def list_cmd(limit: int, as_json: bool) -> None:
    """The newest records with their outbox state."""
    store = open_store()
    items = store.records.newest(limit)
    if as_json:
        emit_json(items)
        return
    for it in items:
        click.echo(
            f"{it['seq']:>7} {it['captured_at']} {it['kpm_id']:<20} {it['programme']:<8}"
            f" {it['decision']:<14} {it['outbox']}"
        )


@records_group.command("verify")
@config_option
@click.option("--public-key", help="Device public key (base64); default: the local device key.")
@json_option
def verify_cmd(public_key: str | None, as_json: bool) -> None:
    """Check every signature and the whole chain; exit 1 naming the first bad seq."""
    cfg = get_config()
    if cfg.device.db_path.exists() and cfg.device.db_path.stat().st_size == 0:
        why = "the store is empty (0 bytes): every record is gone"
        if as_json:
            emit_json({"ok": False, "checked": 0, "first_bad_seq": 1, "reason": why})
        else:
            click.echo(f"FAILED at seq 1: {why}")
        sys.exit(EXIT_NEGATIVE)
    store = open_store()
    if public_key:
        try:
            vk = verify_key_from_b64(public_key)
        except ValueError as exc:
            raise BadInput(f"--public-key: {exc}") from None
    else:
        vk = load_signing_key(cfg.device.key_path).verify_key
    count, problem = audit_store(store, vk)
    if problem is None:
        # what the rows alone cannot show: a chain cut short of its signed head
        from edge.integrity import head_fault

        problem = head_fault(store, vk, device_id_for(vk))
    result = {
        "ok": problem is None,
        "checked": count,
        "first_bad_seq": problem.seq if problem else None,
        "reason": problem.reason if problem else None,
    }
    if as_json:
        emit_json(result)
    elif problem:
        click.echo(
            f"FAILED at seq {problem.seq}: {problem.reason} ({count} records good before it)"
        )
    else:
        click.echo(f"OK: {count} records, signatures and chain intact")
    if problem:
        sys.exit(EXIT_NEGATIVE)


def audit_store(store: Store, vk: VerifyKey) -> tuple[int, ChainProblem | None]:
    """The chain check over the stored rows, plus what only the table can show.

    Beyond `verify_chain`: a body stored under another seq (swapped rows), a stored
    hash that does not match its body, and a missing newest record (the meta head
    and outbox remember the highest seq committed).
    """
    start_seq, start_hash = store.chain_anchor()
    row_problem: list[ChainProblem] = []

    def checked_rows() -> Iterator[dict[str, Any]]:
        for seq, stored_hash, body in store.iter_rows():
            try:
                record = json.loads(body)
            except json.JSONDecodeError:
                row_problem.append(ChainProblem(seq, "stored body is not valid JSON"))
                return
            if not isinstance(record, dict) or record.get("seq") != seq:
                found = record.get("seq") if isinstance(record, dict) else None
                row_problem.append(ChainProblem(seq, f"row holds the body of seq {found!r}"))
                return
            try:
                same_hash = stored_hash == record_hash(record)
            except (TypeError, ValueError):
                same_hash = False
            if not same_hash:
                row_problem.append(ChainProblem(seq, "stored hash does not match the body"))
                yield record  # the chain check may name a sharper fault at this seq first
                return
            yield record

    count, problem = verify_chain(
        checked_rows(),
        vk,
        device_id=device_id_for(vk),
        start_seq=start_seq + 1,
        start_hash=start_hash,
    )
    if problem is None and row_problem:
        problem = row_problem[0]
    if problem is None:
        head = store.expected_head()
        last = start_seq + count
        if head > last:
            problem = ChainProblem(
                last + 1, f"record seq {last + 1} is missing (the store committed up to {head})"
            )
        elif count and store.get_meta("head_seq") == str(last):
            head_hash = store.get_meta("head_hash")
            if head_hash and head_hash != store.chain_head()[1]:
                problem = ChainProblem(last, "newest record differs from the one committed")
    return count, problem


@records_group.command("init")
@config_option
@click.option(
    "--i-know-the-store-is-lost",
    "lost",
    is_flag=True,
    help="Required: accept the store as it is now (or empty) and sign its head.",
)
@json_option
def init_cmd(lost: bool, as_json: bool) -> None:
    """An admin's decision after the daemon refused a lost, emptied, truncated or corrupted
    store: keep what is there (a corrupted file is moved aside), sign its head, go on."""
    from edge.integrity import LOST_FLAG, declare_store_lost

    if not lost:
        raise BadInput(
            f"records init: give {LOST_FLAG} to accept that records not acked by HQ, the "
            "roster and the served ledger of this store may be lost"
        )
    cfg = get_config()
    key = load_signing_key(cfg.device.key_path)
    done = declare_store_lost(
        cfg.device.db_path, cfg.store.busy_timeout_ms, key, device_id_for(key.verify_key)
    )
    if as_json:
        emit_json(done)
        return
    if done.get("moved_aside"):
        click.echo(f"corrupted store moved aside to {done['moved_aside']}")
    if done.get("problem"):
        click.echo(f"was: {done['problem']}")
    click.echo(
        f"{cfg.device.db_path}: head signed at seq {done['head']['seq']}; HQ will flag the "
        "records it holds beyond this point as a missing tail"
    )


@records_group.command("export")
@config_option
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="File (default stdout)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of JSON lines.")
def export_cmd(out: Path | None, as_json: bool) -> None:
    """Export the stored signed records exactly as signed (JSON lines, or --json array)."""
    store = open_store()
    stream = open(out, "w", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        if as_json:
            stream.write("[")
        for i, (_seq, body) in enumerate(store.iter_bodies()):
            if as_json:
                stream.write(("," if i else "") + "\n" + body)
            else:
                stream.write(body + "\n")
        if as_json:
            stream.write("\n]\n")
    finally:
        if out:
            stream.close()
