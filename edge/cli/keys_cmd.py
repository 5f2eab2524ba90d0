"""`edge keys init|show`: the device's Ed25519 identity."""

from __future__ import annotations

import click

from edge.cli.common import config_option, emit_json, get_config, json_option
from edge.keys import b64, device_id_for, init_device_key, load_signing_key


@click.group("keys")
def keys_group() -> None:
    """Make and show the device key."""


@keys_group.command("init")
@config_option
@click.option("--force", is_flag=True, help="Replace an existing key (the old identity is lost).")
@json_option
def init(force: bool, as_json: bool) -> None:
    """Make the device key (mode 0600) in the state directory."""
    cfg = get_config()
    key = init_device_key(cfg.device.key_path, force=force)
    if force and cfg.device.db_path.exists() and cfg.device.db_path.stat().st_size:
        # the admin chose a new identity: the store's head is now signed by the new key
        # (otherwise the daemon would refuse the store as not this device's)
        from edge.integrity import write_marker
        from edge.store import Store

        store = Store(cfg.device.db_path, cfg.store.busy_timeout_ms)
        try:
            store.sign_current_head(key, device_id_for(key.verify_key))
            store.log_event("device_key_replaced", device_id=device_id_for(key.verify_key))
        finally:
            store.close()
        write_marker(cfg.device.db_path, device_id_for(key.verify_key))
    info = {
        "device_id": device_id_for(key.verify_key),
        "public_key": b64(bytes(key.verify_key)),
        "key_file": str(cfg.device.key_path),
    }
    if as_json:
        emit_json(info)
    else:
        click.echo(f"device key written to {info['key_file']}")
        click.echo(f"device_id  {info['device_id']}")
        click.echo(f"public_key {info['public_key']}")


@keys_group.command("show")
@config_option
@json_option
def show(as_json: bool) -> None:
    """Print the device id and public key (register these at HQ)."""
    key = load_signing_key(get_config().device.key_path)
    info = {"device_id": device_id_for(key.verify_key), "public_key": b64(bytes(key.verify_key))}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"device_id  {info['device_id']}")
        click.echo(f"public_key {info['public_key']}")
