"""The `edge` command line: a thin click layer over the library.

Exit codes: 0 done, 1 a negative result, 2 bad input or configuration,
3 a device or service is missing. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
from edge_hq.cli import hq_group
from edge_tools.demo_cmd import demo_cmd

from edge import __version__
from edge.cli.common import CliState
from edge.cli.config_cmd import config_group
from edge.cli.daemon_cmd import run_cmd, status_cmd, verify_cmd
from edge.cli.doctor_cmd import doctor_cmd
from edge.cli.face_cmd import enroll, eval_cmd
from edge.cli.gps_cmd import gps_cmd
from edge.cli.keys_cmd import keys_group
from edge.cli.liveness_cmd import liveness_group
from edge.cli.officer_cmd import officer_group
from edge.cli.outbox_cmd import outbox_group
from edge.cli.records_cmd import records_group
from edge.cli.roster_cmd import roster_group
from edge.errors import EXIT_BAD_INPUT, EXIT_MISSING, EdgeError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file (default $BANSOS_EDGE_CONFIG or /etc/bansos-edge/edge.toml).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(__version__, prog_name="edge")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """bansos-edge: verified social-aid handover on a kiosk."""
    ctx.obj = CliState(config_path)
    level = logging.WARNING - 10 * verbose
    if os.environ.get("INVOCATION_ID") and os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"  # systemd adds the time
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=max(level, logging.DEBUG), format=fmt, stream=sys.stderr)


cli.add_command(config_group)
cli.add_command(keys_group)
cli.add_command(records_group)
cli.add_command(roster_group)
cli.add_command(officer_group)
cli.add_command(liveness_group)
for _command in (
    run_cmd,
    verify_cmd,
    status_cmd,
    doctor_cmd,
    demo_cmd,
    gps_cmd,
    eval_cmd,
    enroll,
    outbox_group,
    hq_group,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: run click, turn our errors into one line and an exit code."""
    try:
        rv = cli.main(args=argv, prog_name="edge", standalone_mode=False)
    except EdgeError as exc:
        click.echo(f"edge: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT_BAD_INPUT if exc.exit_code == 2 else exc.exit_code
    except click.exceptions.Abort:
        click.echo("edge: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, never a traceback
        logging.getLogger("edge").debug("unexpected error", exc_info=True)
        click.echo(f"edge: error: {type(exc).__name__}: {exc} (run with -v for details)", err=True)
        return EXIT_MISSING
    except BrokenPipeError:
        return 0
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
