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
