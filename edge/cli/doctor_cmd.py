"""`edge doctor`: a line per check; non-zero exit when any fails."""

from __future__ import annotations

import sys

import click

from edge.cli.common import config_option, emit_json, get_config, json_option
from edge.errors import EXIT_MISSING


@click.command("doctor")
@config_option
@json_option
def doctor_cmd(as_json: bool) -> None:
    """Check camera, gpsd, broker (TLS), models, key file, disk and clock."""
    from edge.doctor import run_checks

    results = run_checks(get_config())
    if as_json:
        emit_json([{"check": r.name, "ok": r.ok, "detail": r.detail} for r in results])
    else:
        for r in results:
            click.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.name:<8} {r.detail}")
    if not all(r.ok for r in results):
        sys.exit(EXIT_MISSING)
