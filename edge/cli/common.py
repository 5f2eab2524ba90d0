"""What every subcommand shares: the --config option, lazy config loading, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edge.config import Config, load_config

F = TypeVar("F", bound=Callable[..., Any])


class CliState:
    """Holds the --config path; loads and validates the file once, on first use."""

    def __init__(self, config_path: Path | None = None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def _remember_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    state = ctx.find_object(CliState)
    if state is None:
        state = ctx.ensure_object(CliState)
    if value is not None:
        state.config_path = value


def config_option(f: F) -> F:
    """Add `--config PATH` to a subcommand (the group accepts it too)."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        expose_value=False,
        callback=_remember_config,
        help="Config file (default $BANSOS_EDGE_CONFIG or /etc/bansos-edge/edge.toml).",
    )(f)


def get_config(ctx: click.Context | None = None) -> Config:
    """The validated config of this invocation (raises ConfigError -> exit 2)."""
    ctx = ctx or click.get_current_context()
    state = ctx.find_object(CliState)
    if state is None:
        state = ctx.ensure_object(CliState)
    return state.config()


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout (sorted keys, so output is diffable)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)
