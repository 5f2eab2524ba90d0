"""`edge enroll` (reference template) and the config/runtime helpers `edge eval` shares.

Both run without a config file: if none was given and the default one does not exist,
the built-in defaults (bundled models) are used.
"""

from __future__ import annotations

import base64
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from edge.cli.common import CliState, config_option, emit_json, get_config, json_option
from edge.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    Config,
    FaceConfig,
)


def effective_config() -> Config:
    """The given or default config file, else the built-in defaults (bundled models)."""
    ctx = click.get_current_context()
    state = ctx.find_object(CliState)
    explicit = (state is not None and state.config_path is not None) or bool(
        os.environ.get(CONFIG_ENV)
    )
    return get_config(ctx) if explicit or DEFAULT_CONFIG_PATH.exists() else Config()


def face_config(runtime: str | None, threads: int | None = None) -> FaceConfig:
    face = effective_config().face
    if runtime:
        face = replace(face, runtime=runtime)
    if threads:
        face = replace(face, threads=threads)
    return face


runtime_option = click.option(
    "--runtime",
    type=click.Choice(["auto", "tflite_runtime", "litert"]),
    default=None,
    help="TFLite runtime (default: face.runtime from the config).",
)


@click.command("enroll")
@config_option
@click.option("--kpm", "kpm_id", required=True, help="KPM id the template is for.")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@runtime_option
@json_option
def enroll(kpm_id: str, photos: tuple[Path, ...], runtime: str | None, as_json: bool) -> None:
    """Reference template from civil-registry style photos (for HQ's roster builder)."""
    from edge.infer.pipeline import FacePipeline, enroll_template

    if not kpm_id.strip():
        raise click.BadParameter("must not be empty", param_hint="--kpm")
    pipeline = FacePipeline.from_config(face_config(runtime))
    template = enroll_template(pipeline, list(photos))
    out: dict[str, Any] = {
        "kpm_id": kpm_id,
        "model": pipeline.embedder_sha256,
        "photos": len(photos),
        "template": base64.b64encode(template.astype("<f4").tobytes()).decode("ascii"),
    }
    if as_json:
        emit_json(out)
    else:
        click.echo(f"{kpm_id}: template from {len(photos)} photo(s), model {out['model'][:12]}")
        click.echo(out["template"])
