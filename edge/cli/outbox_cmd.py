"""`edge outbox status`: how much is waiting for HQ, since when, and whether new records are refused."""

from __future__ import annotations

import time
from typing import Any

import click

from bansos_contract.utc import iso_ms as utc_iso
from edge.cli.common import config_option, emit_json, get_config, json_option
from edge.errors import BadInput
from edge.store import Store
from edge.uplink.outbox import Outbox


def outbox_report() -> dict[str, Any]:
    """The outbox figures of the configured database, with the limits they are judged by."""
    cfg = get_config()
    path = cfg.device.db_path
    if not path.exists():
        raise BadInput(f"{path}: no database here (device.state_dir in {cfg.source})")
    store = Store(path, cfg.store.busy_timeout_ms)
    try:
        stats = Outbox(store, cfg.outbox.max_rows, cfg.outbox.max_bytes).stats(time.time())
    finally:
        store.close()
    return {
        **stats.as_dict(),
        "last_sync_at": None if stats.last_sync is None else utc_iso(stats.last_sync),
        "limits": {"max_rows": cfg.outbox.max_rows, "max_bytes": cfg.outbox.max_bytes},
        "resend_after_s": cfg.outbox.resend_after_s,
        "retention_days": cfg.outbox.retention_days,
    }


@click.group("outbox")
def outbox_group() -> None:
    """The durable queue of records waiting for HQ."""


@outbox_group.command("status")
@config_option
@json_option
def status_cmd(as_json: bool) -> None:
    """Queue depth (pending + sent), bytes, oldest unacked age, last sync, full or not."""
    r = outbox_report()
    if as_json:
        emit_json(r)
        return
    age = r["oldest_pending_age_s"]
    click.echo(f"pending {r['pending']}  sent {r['sent']}  acked {r['acked']}")
    click.echo(
        f"waiting {r['depth']} records / {r['depth_bytes']} bytes"
        f" (limits {r['limits']['max_rows']} / {r['limits']['max_bytes']})"
    )
    click.echo(f"oldest unacked: {'-' if age is None else f'{age:.0f} s'}")
    click.echo(f"last sync: {r['last_sync_at'] or 'never'}")
    if r["full"]:
        click.echo(f"REFUSING new verifications: {r['full_reason']}")
