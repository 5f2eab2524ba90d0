"""`edge demo`: the README's first command."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Keep the demo's state here (default: a temporary directory, removed afterwards).",
)
def demo_cmd(workdir: Path | None) -> None:
    """Run the whole flow end to end on embedded defaults: no Pi, no configuration."""
    from edge_tools.demo.run import run_demo

    sys.exit(run_demo(workdir, click.echo))
