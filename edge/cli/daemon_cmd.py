"""`edge run`, `edge verify`, `edge status`: the daemon and the officer's commands."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from edge.api import request_json
from edge.cli.common import config_option, emit_json, get_config, json_option
from edge.config import Config, check_files
from edge.errors import EXIT_MISSING, EXIT_NEGATIVE, BadInput, DeviceMissing, EdgeError
from edge.keys import device_id_for, load_signing_key
from edge.store import Store

POSITIVE = ("match", "manual")


class AttemptsRefused(EdgeError):
    exit_code = EXIT_NEGATIVE


@click.command("run")
@config_option
def run_cmd() -> None:
    """Run the kiosk daemon (under systemd: Type=notify)."""
    from edge.daemon import Daemon
    from edge.malloc_tuning import tune_malloc

    tune_malloc()  # before the models and the first frames are allocated
    cfg = get_config()
    check_files(cfg)  # a missing TLS file is named now (exit 2), not at the first connect
    if cfg.camera.backend == "replay":
        logging.getLogger("edge").warning(
            "camera.backend is replay: verifying against %s, not a live camera;"
            " a kiosk must use picamera2",
            cfg.camera.replay_path or "the bundled SAMPLE faces",
        )
    sys.exit(Daemon(cfg).serve())


def _daemon_up(cfg: Config, path: str, timeout: float = 3.0) -> tuple[int, dict[str, Any]] | None:
    try:
        return request_json(cfg.api.listen, "GET", path, timeout=timeout)
    except OSError:
        return None


@click.command("verify")
@config_option
@click.option("--kpm", "kpm_id", required=True, help="The KPM id to verify.")
@click.option("--officer", "officer_id", default="cli", show_default=True, help="Officer id.")
@click.option("--programme", type=click.Choice(["sembako", "pkh"]), default=None)
@click.option("--period", default=None, help="Distribution period (default: the newest).")
@click.option(
    "--image",
    type=click.Path(path_type=Path, dir_okay=True),
    default=None,
    help="Verify this photo (or folder of frames) instead of the camera; needs no daemon.",
)
@click.option("--manual-reason", default=None, help="Record a manual handover, with the reason.")
@json_option
def verify_cmd(
    kpm_id: str,
    officer_id: str,
    programme: str | None,
    period: str | None,
    image: Path | None,
    manual_reason: str | None,
    as_json: bool,
) -> None:
    """Verify a KPM now: through the running daemon, or in this process with --image."""
    cfg = get_config()
    request: dict[str, Any] = {"kpm_id": kpm_id, "officer_id": officer_id}
    for k, v in (("programme", programme), ("period", period), ("manual_reason", manual_reason)):
        if v is not None:
            request[k] = v
    if image is None and _daemon_up(cfg, "/v1/health") is not None:
        code, answer = request_json(cfg.api.listen, "POST", "/v1/verify", request, timeout=120)
        if code == 400:
            raise BadInput(answer.get("error", "bad request"))
        if code == 409:  # face attempts used: a negative answer, only manual may follow
            raise AttemptsRefused(answer.get("error", "face attempts used"))
        if code >= 500:
            raise DeviceMissing(f"daemon: {answer.get('error', code)}")
    else:
        from edge.oneshot import verify_once

        if image is not None and not image.exists():
            raise BadInput(f"--image {image}: no such file")
        answer = verify_once(cfg, request, image)
    if as_json:
        emit_json(answer)
    else:
        score = answer.get("score")
        click.echo(
            f"{answer['decision'].upper()}  kpm {answer['kpm_id']}"
            + (
                f"  score {score:.3f} (threshold {answer['threshold']:.3f})"
                if score is not None
                else ""
            )
            + (f"  ({answer['reason']})" if answer.get("reason") else "")
            + f"  record seq {answer['seq']}"
        )
    if answer["decision"] not in POSITIVE:
        sys.exit(EXIT_NEGATIVE)


def offline_status(cfg: Config) -> dict[str, Any]:
    """What can be said without the daemon: the store's queue and roster, disk, key."""
    status: dict[str, Any] = {"state": "not running"}
    if cfg.device.key_path.exists():
        status["device_id"] = device_id_for(load_signing_key(cfg.device.key_path).verify_key)
    if cfg.device.db_path.exists():
        store = Store(cfg.device.db_path, cfg.store.busy_timeout_ms)
        status["outbox"] = store.outbox.counts_by_state()
        status["roster"] = store.roster_summary()
        status["records"] = store.record_count()
        store.close()
    if Path(cfg.device.state_dir).exists():
        status["disk_free_bytes"] = shutil.disk_usage(cfg.device.state_dir).free
    return status


@click.command("status")
@config_option
@json_option
def status_cmd(as_json: bool) -> None:
    """Queue, broker, GPS, camera, model, disk and clock, from the running daemon."""
    cfg = get_config()
    answer = _daemon_up(cfg, "/v1/status", timeout=10.0)
    status = answer[1] if answer else offline_status(cfg)
    if as_json:
        emit_json(status)
    else:
        for key, value in sorted(status.items()):
            click.echo(f"{key:<16} {value}")
    if answer is None:
        sys.exit(EXIT_MISSING)
