"""`edge officer hash-pin|check`: what the fleet admin needs to write the officers file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge.cli.common import config_option, get_config
from edge.errors import BadInput
from edge.ui.officers import hash_pin, load_officers


@click.group("officer")
def officer_group() -> None:
    """Officers who may sign in on the kiosk screen."""


@officer_group.command("hash-pin")
def hash_pin_cmd() -> None:
    """Read a 4-8 digit PIN (stdin, or a no-echo prompt) and print its pin_hash."""
    if sys.stdin.isatty():
        pin = click.prompt("PIN", hide_input=True, confirmation_prompt=True)
    else:
        pin = sys.stdin.readline().strip()
    if not pin:
        raise BadInput("PIN: nothing read from stdin")
    click.echo(hash_pin(pin))


@officer_group.command("check")
@config_option
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
def check_cmd(file: Path | None) -> None:
    """Validate the officers file (default: ui.officers_file of the config)."""
    path = file if file is not None else Path(get_config().ui.officers_file)
    officers = load_officers(path)
    badges = sum(1 for o in officers.values() if o.badge)
    click.echo(f"{path}: {len(officers)} officer(s), {badges} with a badge")
