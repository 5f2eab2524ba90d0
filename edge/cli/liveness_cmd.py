"""`edge liveness eval`: presentation-attack detection figures (ISO/IEC 30107-3) on photos."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from edge.cli.common import config_option, emit_json, json_option
from edge.cli.face_cmd import _runtime_option, effective_config


@click.group("liveness")
def liveness_group() -> None:
    """Presentation-attack detection (a print or a screen must never collect the aid)."""


def _folders(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


@liveness_group.command("eval")
@config_option
@click.option(
    "--bona-fide",
    "bona_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of live-person photos (sub-folders allowed).",
)
@click.option(
    "--attack",
    "attack_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of attack photos; sub-folders are reported one by one (e.g. by attack type).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Liveness threshold (default: liveness.threshold from the config).",
)
@click.option(
    "--burst",
    type=click.IntRange(1, 60),
    default=None,
    help="Frames per presentation (default: face.burst_frames).",
)
@click.option(
    "--folders",
    default=None,
    help="Only these first-level sub-folders (comma-separated), e.g. one half of the subjects.",
)
@click.option(
    "--target-bpcer",
    type=click.FloatRange(0.0, 0.5),
    default=None,
    help="Also report the threshold that keeps BPCER at or below this (calibration).",
)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False), default=None)
@_runtime_option
@json_option
def eval_cmd(
    bona_dir: Path,
    attack_dir: Path,
    threshold: float | None,
    burst: int | None,
    folders: str | None,
    target_bpcer: float | None,
    plot_path: Path | None,
    runtime: str | None,
    as_json: bool,
) -> None:
    """APCER, BPCER, BPCER100/BPCER20 and failure to acquire, per presentation and per frame."""
    from edge_tools.evaluation import pad_eval as pe

    from edge.infer.pipeline import FacePipeline, LivenessPolicy

    cfg = effective_config()
    face = cfg.face if runtime is None else replace(cfg.face, runtime=runtime)
    live = replace(cfg.liveness, enabled=True)
    if threshold is not None:
        live = replace(live, threshold=threshold)
    n = burst or face.burst_frames
    wanted = _folders(folders)
    bona = pe.presentations(bona_dir, n, wanted)
    attack = pe.presentations(attack_dir, n, wanted)
    pipeline = FacePipeline.from_config(face, liveness_cfg=live)
    paths = [f for p in (*bona, *attack) for f in p.frames]
    with click.progressbar(length=len(paths), label="judging photos", file=sys.stderr) as bar:
        frames = pe.score_frames(pipeline, paths, bar.update)
    policy = LivenessPolicy.from_config(live)
    rep, pres, per_frame = pe.report(bona, attack, frames, policy, target_bpcer)
    rep["burst"] = n
    rep["runtime"] = pipeline.runtime
    assert pipeline.liveness is not None
    rep["models"] = list(pipeline.liveness.sha256s)
    rep["bona_fide_dir"] = str(bona_dir)
    rep["attack_dir"] = str(attack_dir)
    if wanted:
        rep["folders"] = list(wanted)
    if plot_path is not None:
        from edge_tools.evaluation.det_plot import plot_det

        curves = {}
        for label, (b, a) in (("per presentation", pres), ("per frame", per_frame)):
            if b.size and a.size:
                curves[label] = (b, a)
        if curves:
            plot_det(
                curves,
                plot_path,
                f"PAD DET: {bona_dir.name} vs {attack_dir.name}",
                {"APCER 1%": 0.01, "APCER 5%": 0.05},
                axes=("APCER (attacks accepted)", "BPCER (bona fide refused)"),
            )
            rep["plot"] = str(plot_path)
    if as_json:
        emit_json(rep)
        return
    _print(rep)


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f}%"


def _print(rep: dict[str, Any]) -> None:
    click.echo(
        f"liveness threshold {rep['threshold']:.3f}, burst {rep['burst']},"
        f" rule {rep['rule']['min_live_frames']} frames / {rep['rule']['min_live_fraction']:.0%}"
    )
    for level in ("presentation", "frame"):
        r = rep[level]
        click.echo(
            f"per {level}: {r['bona_fide']} bona fide, {r['attack']} attack;"
            f" APCER {_pct(r['apcer'])} ({r['apcer_errors']}), BPCER {_pct(r['bpcer'])}"
            f" ({r['bpcer_errors']}), BPCER100 {_pct(r['bpcer100'])}, BPCER20 {_pct(r['bpcer20'])},"
            f" FTA {_pct(r['fta'])}"
        )
    cal = rep.get("calibration")
    if cal:
        at = cal["at_threshold"]
        click.echo(
            f"calibration: BPCER <= {_pct(cal['target_bpcer'])} at threshold {cal['threshold']:.4f}"
            f" (APCER {_pct(at['apcer'])}, BPCER {_pct(at['bpcer'])})"
        )
    worst = max(
        ((k, v["apcer"]) for k, v in rep["per_folder"]["attack"].items() if v["apcer"] is not None),
        key=lambda kv: kv[1],
        default=None,
    )
    if worst is not None:
        click.echo(f"worst attack folder: {worst[0]} APCER {_pct(worst[1])}")
    if "plot" in rep:
        click.echo(f"DET plot: {rep['plot']}")
