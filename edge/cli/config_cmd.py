"""`edge config check|show`: validate a config file before it reaches a kiosk."""

from __future__ import annotations

import dataclasses

import click

from edge.cli.common import config_option, emit_json, get_config, json_option
from edge.config import check_files, config_to_toml


@click.group("config")
def config_group() -> None:
    """Check and show the configuration."""


@config_group.command("check")
@config_option
@json_option
@click.option(
    "--no-files",
    is_flag=True,
    help="Do not look for the files it names (TLS files not installed yet).",
)
def check(as_json: bool, no_files: bool) -> None:
    """Validate the config file and the files it names (exit 2 with file and key)."""
    cfg = get_config()
    if not no_files:
        check_files(cfg)
    if as_json:
        emit_json({"ok": True, "file": cfg.source})
    else:
        click.echo(f"{cfg.source}: OK")


@config_group.command("show")
@config_option
@json_option
def show(as_json: bool) -> None:
    """Print the effective configuration, defaults included."""
    cfg = get_config()
    if as_json:
        emit_json(dataclasses.asdict(cfg))
    else:
        click.echo(config_to_toml(cfg), nl=False)
