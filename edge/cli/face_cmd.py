"""`edge eval` (accuracy on a labelled face folder) and `edge enroll` (reference template).

Both run without a config file: if none was given and the default one does not exist,
the built-in defaults (bundled models) are used.
"""

from __future__ import annotations

import base64
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge.cli.common import CliState, config_option, emit_json, get_config, json_option
from edge.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, Config, FaceConfig


def effective_config() -> Config:
    """The given or default config file, else the built-in defaults (bundled models)."""
    ctx = click.get_current_context()
    state = ctx.find_object(CliState)
    explicit = (state is not None and state.config_path is not None) or bool(
        os.environ.get(CONFIG_ENV)
    )
    return get_config(ctx) if explicit or DEFAULT_CONFIG_PATH.exists() else Config()


def _face_config(runtime: str | None, threads: int | None = None) -> FaceConfig:
    face = effective_config().face
    if runtime:
        face = replace(face, runtime=runtime)
    if threads:
        face = replace(face, threads=threads)
    return face


_runtime_option = click.option(
    "--runtime",
    type=click.Choice(["auto", "tflite_runtime", "litert"]),
    default=None,
    help="TFLite runtime (default: face.runtime from the config).",
)


@click.command("eval")
@config_option
@click.option(
    "--faces",
    "faces_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of identity folders (optional DIR/slices.json).",
)
@click.option("--target-fmr", type=click.FloatRange(1e-7, 0.5), default=1e-3, show_default=True)
@click.option(
    "--threshold", type=click.FloatRange(-1.0, 1.0), default=None, help="Report FMR/FNMR at T."
)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option(
    "--max-impostors",
    type=click.IntRange(200_000, 50_000_000),
    default=6_000_000,
    show_default=True,
    help="All impostor pairs up to this many, else a seeded sample of this many.",
)
@click.option(
    "--references",
    type=click.IntRange(1, 8),
    default=None,
    help="Also compare 1..N reference templates per identity (registry photo + earlier "
    "captures): FNMR at the target FMR, thresholds from split identities.",
)
@click.option(
    "--cache",
    "cache_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Keep the embeddings in this .npz (reused when model and files match).",
)
@click.option("--limit-identities", type=click.IntRange(2, None), default=None, hidden=True)
@click.option("--embedder-variant", default=None, hidden=True, help="e.g. fp32 (comparison)")
@_runtime_option
@click.option("--threads", type=click.IntRange(1, 16), default=None, help="TFLite threads.")
@json_option
def eval_cmd(
    faces_dir: Path,
    target_fmr: float,
    threshold: float | None,
    plot_path: Path | None,
    max_impostors: int,
    references: int | None,
    cache_path: Path | None,
    limit_identities: int | None,
    embedder_variant: str | None,
    runtime: str | None,
    threads: int | None,
    as_json: bool,
) -> None:
    """Accuracy on a labelled face set: FNMR at FMR 1e-2/1e-3/1e-4, EER, FTA, DET."""
    from edge_tools.evaluation import evaluate as ev

    from edge.infer.pipeline import FacePipeline

    face = _face_config(runtime, threads)
    data = ev.scan(faces_dir, limit_identities)
    pipeline = FacePipeline.from_config(face, embedder_variant=embedder_variant)
    with click.progressbar(length=len(data.paths), label="embedding faces", file=sys.stderr) as bar:
        embeddings = ev.load_or_embed(pipeline, data, cache_path, bar.update)
    rep, sc = ev.evaluate(
        pipeline,
        data,
        target_fmr=target_fmr,
        threshold=threshold,
        max_impostors=max_impostors,
        embeddings=embeddings,
        references=references,
    )
    if plot_path is not None:
        from edge_tools.evaluation.det_plot import plot_det

        curves = {"all": (sc.gen, sc.imp)}
        for sname in data.slices:
            members = [data.names.index(m) for m in data.slices[sname] if m in data.names]
            mask = np.isin(data.labels, members)
            g = sc.gen[mask[sc.gen_pairs[0]]]
            imp = sc.imp[mask[sc.imp_pairs[0]] | mask[sc.imp_pairs[1]]]
            if g.size and imp.size:
                curves[f"{sname} ({len(members)} ids)"] = (g, imp)
        plot_det(curves, plot_path, f"DET on {faces_dir.name}", {f"FMR {target_fmr:g}": target_fmr})
        rep["plot"] = str(plot_path)
    if as_json:
        emit_json(rep)
    else:
        _print_human(rep)


def _print_human(rep: dict[str, Any]) -> None:
    click.echo(
        f"{rep['images']} images, {rep['identities']} identities, "
        f"{rep['genuine_pairs']} genuine / {rep['impostor_pairs']} impostor pairs"
    )
    click.echo(f"failure to acquire: {rep['failure_to_acquire']:.4f}   EER: {rep['eer']:.4f}")
    for key, v in rep["at_fmr"].items():
        click.echo(f"FMR {key:>6}: threshold {v['threshold']:.4f}  FNMR {v['fnmr']:.4f}")
    sh = rep["split_half"]
    for half in ("A", "B"):
        d = sh[f"calibrate_on_{half}"]
        if d is None:
            click.echo(f"split-half: half {half} too small to calibrate on")
            continue
        other = "B" if half == "A" else "A"
        click.echo(
            f"split-half: threshold {d['threshold']:.4f} from {half}, "
            f"FMR {d[f'fmr_on_{other}']:.5f} on {other}"
        )
    for sname, s in rep.get("slices", {}).items():
        key = f"{rep['target_fmr']:g}"
        v = s["at_fmr"].get(key, {})
        click.echo(f"slice {sname}: FNMR {v.get('fnmr')} FMR {v.get('fmr')} at FMR {key} threshold")
    if "at_threshold" in rep:
        t = rep["at_threshold"]
        click.echo(f"at threshold {t['threshold']}: FMR {t['fmr']:.6f} FNMR {t['fnmr']:.4f}")
    refs = rep.get("references")
    if refs:
        click.echo(
            f"reference templates ({refs['enrolled_identities']} enrolled identities, "
            f"{refs['repeats']} draws, thresholds from the other half at FMR {refs['target_fmr']:g}):"
        )
        for r in refs["results"]:
            fixed = r.get("at_threshold")
            click.echo(
                f"  {r['references']} ({r['templates']}): FNMR {r['fnmr']:.4f} "
                f"(x{r['fnmr_ratio_to_one']} of one) FMR {r['fmr']:.5f} "
                f"threshold {r['calibrate_on_A']['threshold']:.4f}"
                + (
                    f"; at {fixed['threshold']}: FNMR {fixed['fnmr']:.4f} FMR {fixed['fmr']:.5f}"
                    if fixed
                    else ""
                )
            )


@click.command("enroll")
@config_option
@click.option("--kpm", "kpm_id", required=True, help="KPM id the template is for.")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@_runtime_option
@json_option
def enroll(kpm_id: str, photos: tuple[Path, ...], runtime: str | None, as_json: bool) -> None:
    """Reference template from civil-registry style photos (for HQ's roster builder)."""
    from edge.infer.pipeline import FacePipeline, enroll_template

    if not kpm_id.strip():
        raise click.BadParameter("must not be empty", param_hint="--kpm")
    pipeline = FacePipeline.from_config(_face_config(runtime))
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


def main(argv: list[str] | None = None) -> int:
    """`python -m edge.cli.face_cmd eval|enroll ...` through the real `edge` error mapping."""
    import edge.cli as edge_cli

    for command in (eval_cmd, enroll):
        if command.name not in edge_cli.cli.commands:
            edge_cli.cli.add_command(command)
    return edge_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
