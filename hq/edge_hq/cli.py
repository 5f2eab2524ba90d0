"""`edge hq ...`: HQ's commands (keys, device registry, roster build, ingest, report, review).

Each takes `--hq-config PATH` (default $BANSOS_HQ_CONFIG or /etc/bansos-edge/hq.toml);
the kiosk's `--config` is not used here.
"""

from __future__ import annotations

import getpass
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edge.cli.common import emit_json, json_option
from edge.config import DEFAULT_EMBEDDER, EMBEDDERS
from edge.errors import BadInput
from edge_hq.config import HqSettings, load_hq_config
from edge_hq.db import Database, open_database

F = TypeVar("F", bound=Callable[..., Any])
_KEY = "hq_config_path"
log = logging.getLogger(__name__)


def _remember(ctx: click.Context, _p: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.find_root().meta[_KEY] = value


def hq_config_option(f: F) -> F:
    return click.option(
        "--hq-config",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        expose_value=False,
        callback=_remember,
        is_eager=True,
        help="HQ config file (default $BANSOS_HQ_CONFIG or /etc/bansos-edge/hq.toml).",
    )(f)


def settings() -> HqSettings:
    ctx = click.get_current_context()
    return load_hq_config(ctx.find_root().meta.get(_KEY))


def database(cfg: HqSettings) -> Database:
    return open_database(cfg.database.url, cfg.database.busy_timeout_ms)


@click.group("hq")
@hq_config_option
def hq_group() -> None:
    """HQ: keys, device registry, roster bundles, record ingest, report, review."""


# -- keys ----------------------------------------------------------------------------
@hq_group.group("keys")
def keys_group() -> None:
    """HQ's signing (Ed25519) and evidence (X25519) keys."""


@keys_group.command("init")
@hq_config_option
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@json_option
def keys_init(force: bool, as_json: bool) -> None:
    """Make both key files (0600); print the public halves for kiosk configs."""
    from edge_hq.keys import init_hq_keys

    cfg = settings()
    pub = init_hq_keys(Path(cfg.keys.dir), force=force)
    data = {
        "signing_public_key": pub.signing_public_key,
        "sealing_public_key": pub.sealing_public_key,
    }
    if as_json:
        emit_json(data)
    else:
        click.echo("[hq]  # put this in every kiosk's edge.toml")
        for k, v in data.items():
            click.echo(f'{k} = "{v}"')


# -- devices -------------------------------------------------------------------------
@hq_group.group("device")
def device_group() -> None:
    """The registry of kiosk public keys HQ trusts."""


@device_group.command("add")
@hq_config_option
@click.argument("device_id")
@click.argument("pubkey")
@click.option("--label", default="", help="A human label (place, van number).")
@json_option
def device_add(device_id: str, pubkey: str, label: str, as_json: bool) -> None:
    """Register kiosk DEVICE_ID with its base64 Ed25519 PUBKEY (`edge keys show`)."""
    from edge_hq.registry import add_device

    db = database(settings())
    try:
        dev = add_device(db, device_id, pubkey, label)
    finally:
        db.close()
    if as_json:
        emit_json(dev.__dict__)
    else:
        click.echo(f"registered {dev.device_id}")


@device_group.command("list")
@hq_config_option
@json_option
def device_list(as_json: bool) -> None:
    """List registered kiosks."""
    from edge_hq.registry import list_devices

    db = database(settings())
    try:
        devices = list_devices(db)
    finally:
        db.close()
    if as_json:
        emit_json([d.__dict__ for d in devices])
    else:
        for d in devices:
            click.echo(f"{d.device_id}  {d.public_key}  {d.label}")


# -- roster --------------------------------------------------------------------------
@hq_group.group("roster")
def roster_group() -> None:
    """Roster bundles for kiosks."""


def _registered_kiosk(cfg: Any, device_id: str) -> None:
    """--device must be a kiosk id (kiosk- + 16 hex) that HQ's registry holds (exit 2)."""
    import re

    from edge_hq.registry import get_device

    if not re.fullmatch(r"kiosk-[0-9a-f]{16}", device_id):
        raise BadInput(
            f"--device {device_id!r}: not a kiosk id (expected kiosk- and 16 hex digits, "
            "as `edge keys show` prints, or * for any kiosk)"
        )
    db = database(cfg)
    try:
        found = get_device(db, device_id)
    finally:
        db.close()
    if found is None:
        raise BadInput(
            f"--device {device_id}: not registered at HQ (`edge hq device add {device_id} "
            "<public key>` first)"
        )


@roster_group.command("build")
@hq_config_option
@click.option("--csv", "csv_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--photos", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--device", "device_id", default="*", help="Target kiosk id, or * for any.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--publish", is_flag=True, help="Publish retained to kiosk/<id>/roster.")
@click.option("--models-dir", default="", help="Embedder models (default: the bundled ones).")
@click.option(
    "--embedder",
    type=click.Choice(list(EMBEDDERS)),
    default=DEFAULT_EMBEDDER,
    show_default=True,
    help="The kiosks' face.embedder: a bundle only imports on kiosks running the same one.",
)
@click.option("--valid-from", default=None, help="UTC YYYY-MM-DDTHH:MM:SSZ (default: today 00:00).")
@click.option("--valid-until", default=None, help="UTC (default: valid-from + 35 days).")
@click.option(
    "--add-captures",
    type=click.IntRange(0, 2),  # the kiosk's thresholds are calibrated for 1..3 templates
    default=0,
    show_default=True,
    help="Per KPM, add up to N earlier verified captures (best match score, one per period) "
    "as extra templates; their evidence is unsealed at HQ, each look audited.",
)
@click.option("--actor", default=None, help="Who unseals captures (audit); default: OS user.")
@json_option
def roster_build(
    csv_path: Path,
    photos: Path,
    device_id: str,
    out: Path | None,
    publish: bool,
    models_dir: str,
    embedder: str,
    valid_from: str | None,
    valid_until: str | None,
    add_captures: int,
    actor: str | None,
    as_json: bool,
) -> None:
    """Templates from reference photos with the kiosk's embedder, signed by HQ."""
    from edge.records import canonical_json
    from edge_hq.keys import load_hq_signing
    from edge_hq.publish import publish_retained, roster_topic
    from edge_hq.review import check_reviewer
    from edge_hq.roster_build import (
        build_bundle,
        compute_templates,
        new_bundle_id,
        parse_kpm_csv,
        pipeline_enroller,
    )

    cfg = settings()
    if out is None and not publish:
        raise BadInput("roster build: give --out FILE and/or --publish")
    try:
        text = csv_path.read_text("utf-8")
    except FileNotFoundError:
        raise BadInput(f"{csv_path}: file not found") from None
    except UnicodeDecodeError:
        raise BadInput(f"{csv_path}: not UTF-8 text") from None
    rows = parse_kpm_csv(text, str(csv_path))
    if device_id != "*":
        _registered_kiosk(cfg, device_id)
    if not photos.is_dir():
        raise BadInput(f"{photos}: not a directory of reference photos")
    window = _window(valid_from, valid_until)
    key = load_hq_signing(Path(cfg.keys.dir))
    who = check_reviewer(_actor(actor)) if add_captures else ""
    model, enroll = pipeline_enroller(models_dir, embedder)
    templates = compute_templates(rows, photos, enroll)
    bundle_id = new_bundle_id()
    captures: dict[str, list[tuple[str, Any]]] = {}
    if add_captures:
        captures = _earlier_captures(cfg, rows, model, add_captures, who, bundle_id)
    bundle = build_bundle(
        rows, templates, model, key, device_id=device_id, bundle_id=bundle_id,
        window=window, captures=captures,
    )  # fmt: skip
    data = canonical_json(bundle)
    topics: list[str] = []
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    if publish:
        if device_id == "*":
            from edge_hq.registry import list_devices

            db = database(cfg)
            try:
                targets = [d.device_id for d in list_devices(db)]
            finally:
                db.close()
        else:
            targets = [device_id]
        for target in targets:
            topic = roster_topic(cfg, target)
            publish_retained(cfg, topic, data)
            topics.append(topic)
    summary = {
        "bundle_id": bundle["bundle_id"],
        "entries": len(bundle["entries"]),
        "model": model,
        "device_id": device_id,
        "out": str(out) if out else None,
        "published": topics,
        "valid_from": bundle["valid_from"],
        "valid_until": bundle["valid_until"],
        "captures_added": sum(len(v) for v in captures.values()),
        "capture_records": {k: [rid for rid, _e in v] for k, v in sorted(captures.items())},
    }
    if as_json:
        emit_json(summary)
    else:
        click.echo(
            f"bundle {summary['bundle_id']}: {summary['entries']} entries, valid "
            f"{summary['valid_from']} .. {summary['valid_until']}, "
            f"{summary['captures_added']} earlier captures added"
        )


def _window(valid_from: str | None, valid_until: str | None) -> tuple[float, float]:
    import time

    from bansos_contract.utc import parse as parse_utc
    from edge_hq.roster_build import DEFAULT_VALID_DAYS, default_window

    def parse(option: str, text: str) -> float:
        try:
            return parse_utc(text)
        except ValueError as exc:
            raise BadInput(f"{option}: {exc}") from None

    lo = parse("--valid-from", valid_from) if valid_from else default_window(time.time())[0]
    hi = parse("--valid-until", valid_until) if valid_until else lo + DEFAULT_VALID_DAYS * 86400
    if hi <= lo:
        raise BadInput("--valid-until: must be later than --valid-from")
    return lo, hi


def _earlier_captures(
    cfg: HqSettings, rows: Any, model: str, per_kpm: int, actor: str, bundle_id: str
) -> dict[str, list[tuple[str, Any]]]:
    """Pick (without unsealing), then audit + unseal the chosen earlier match records."""
    from edge_hq.captures import (
        candidates_for,
        periods_under_review,
        pick_captures,
        unseal_captures,
    )
    from edge_hq.keys import load_hq_box

    box = load_hq_box(Path(cfg.keys.dir))
    db = database(cfg)
    try:
        kpms = sorted({r.kpm_id for r in rows})
        chosen = pick_captures(candidates_for(db, kpms), model, per_kpm, periods_under_review(db))
        opened = unseal_captures(db, box, chosen, actor, bundle_id)
    finally:
        db.close()
    return {k: [(c.record_id, c.embedding) for c in v] for k, v in opened.items()}


# -- ingest --------------------------------------------------------------------------
@hq_group.command("ingest")
@hq_config_option
@click.option("--max-seconds", type=float, default=None, help="Stop after this long (tests).")
@json_option
def ingest_cmd(max_seconds: float | None, as_json: bool) -> None:
    """Verify, store and ack kiosk records until SIGTERM/SIGINT."""
    from edge_hq.ingest import run_ingest

    cfg = settings()
    db = database(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stats = run_ingest(cfg, db, stop, max_seconds)
    finally:
        db.close()
    if as_json:
        emit_json(stats.as_dict())
    else:
        click.echo(
            f"stored {stats.stored}, duplicates {stats.duplicates}, quarantined {stats.quarantined}"
        )


# -- report / review -----------------------------------------------------------------
def _actor(given: str | None) -> str:
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


@hq_group.group("regions")
def regions_group() -> None:
    """Where each KPM lives: the 1:N search's in-region blocks."""


@regions_group.command("import")
@hq_config_option
@click.option("--csv", "csv_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@json_option
def regions_import(csv_path: Path, as_json: bool) -> None:
    """Read kpm_id, province, district, subdistrict from a KPM list (other columns ignored)."""
    from edge_hq.regions import parse_regions_csv, store_regions

    try:
        text = csv_path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BadInput(f"{csv_path}: file not found") from None
    except UnicodeDecodeError:
        raise BadInput(f"{csv_path}: not UTF-8 text") from None
    regions = parse_regions_csv(text, str(csv_path))
    db = database(settings())
    try:
        n = store_regions(db, regions)
    finally:
        db.close()
    districts = len({r.key("district") for r in regions.values()})
    if as_json:
        emit_json({"kpms": n, "districts": districts})
    else:
        click.echo(f"stored the region of {n} KPMs in {districts} districts")


class _Bar:
    """One stderr progress bar per period for the national pass (nothing for tiny runs)."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.period = ""
        self.shown = 0

    def __call__(self, period: str, done: int, total: int) -> None:
        if period != self.period:
            self.close()
            self.period = period
            label = f"1:N national pass {period}"
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr)
            self.bar.__enter__()
            self.shown = 0
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@hq_group.command("report")
@hq_config_option
@click.option("--no-suspects", is_flag=True, help="Skip the 1:N search (needs no private key).")
@click.option("--actor", default=None, help="Who runs the 1:N search (audit); default: OS user.")
@json_option
def report_cmd(no_suspects: bool, actor: str | None, as_json: bool) -> None:
    """Per device, per period/programme, double collection, and suspects (1:N search:
    in-region blocks and a national FAISS pass; killed runs resume)."""
    from edge_hq.keys import load_hq_box
    from edge_hq.report import build_report
    from edge_hq.review import check_reviewer

    cfg = settings()
    who = check_reviewer(_actor(actor))
    box = None if no_suspects else load_hq_box(Path(cfg.keys.dir))
    db = database(cfg)
    bar = _Bar()
    try:
        report = build_report(db, box, who, cfg.suspects, bar)
    finally:
        bar.close()
        db.close()
    if as_json:
        emit_json(report)
        return
    for dev, d in sorted(report["devices"].items()):
        click.echo(
            f"{dev}: {d['records']} records, last seq {d['last_seq']}, missing {d['missing']}, "
            f"forks {len(d['forks'])}, bad signatures {d['bad_signatures']}"
            + (
                f", MISSING TAIL seq {d['missing_tail'][0]}-{d['missing_tail'][1]} (the kiosk "
                f"signed a head at {d['missing_tail'][1]})"
                if d.get("missing_tail")
                else ""
            )
            + (", HEAD MISMATCH" if d.get("head_mismatch") else "")
        )
    for p in report["periods"]:
        click.echo(
            f"{p['period']} {p['programme']}: {p['matches']} matches, no-match rate "
            f"{p['no_match_rate']}, outside geofence {p['outside_geofence']}, "
            f"spoof {p['spoofs']} (manual after spoof {p['manual_after_spoof']}), "
            f"matches without liveness {p['match_without_liveness']}"
            + (
                f", REPLAY CAMERA {p['replay_records']} records from {', '.join(p['replay_devices'])}"
                if p["replay_records"]
                else ""
            )
        )
    for d in report["double_collection"]:
        where = "across kiosks" if d["across_kiosks"] else "on one kiosk"
        click.echo(
            f"double collection {where}: {d['kpm_id']} {d['programme']} {d['period']} served "
            f"{d['served']} times: " + ", ".join(
                f"{r['id']} ({r['decision']}, {r['device_id']}, {r['captured_at']})"
                for r in d["records"]
            )
        )  # fmt: skip
    if report["suspects"] is not None:
        click.echo(f"suspects: {len(report['suspects'])}")
        for p in report["suspect_search"].get("periods", []):
            reg, nat = p["region"], p["national"]
            click.echo(
                f"  searched {p['period']}: {p['faces']} faces"
                + (
                    f"; in-region by {reg['level']} at {reg['threshold']}: "
                    f"{len(reg['blocks'])} blocks"
                    if reg
                    else ""
                )
                + (
                    f"; national {nat['index']} at {nat['threshold']} "
                    + ", ".join(
                        f"{k} {nat[k]}" for k in ("nlist", "nprobe", "M", "efSearch") if k in nat
                    )
                    if nat
                    else ""
                )
            )
        for sus in report["suspects"]:
            click.echo(
                f"  {sus['period']} same face for {', '.join(sus['kpm_ids'])} "
                f"(score {sus['max_score']}, found by {', '.join(sus['found_by'])}): "
                f"records {', '.join(sus['record_ids'])}"
            )


@hq_group.command("review")
@hq_config_option
@click.argument("record_id")
@click.option("--reviewer", required=True, help="Who is looking (written to the audit log).")
@click.option("--reason", default="", help="Why (case number); written to the audit log.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the face crop (JPEG, mode 0600) here.")  # fmt: skip
@json_option
def review_cmd(record_id: str, reviewer: str, reason: str, out: Path | None, as_json: bool) -> None:
    """Unseal one record's evidence with HQ's key; the look is audited first."""
    from edge_hq.keys import load_hq_box
    from edge_hq.review import check_reviewer, review_record

    cfg = settings()
    check_reviewer(reviewer)
    box = load_hq_box(Path(cfg.keys.dir))
    db = database(cfg)
    try:
        reviewed = review_record(db, box, record_id, reviewer, reason)
    finally:
        db.close()
    if out is not None:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(reviewed.evidence.crop_jpeg)
    r = reviewed.record
    info = {
        "id": r["id"], "device_id": r["device_id"], "seq": r["seq"], "kpm_id": r["kpm_id"],
        "decision": r["decision"], "score": r["score"], "captured_at": r["captured_at"],
        "crop_bytes": len(reviewed.evidence.crop_jpeg),
        "embedding_dim": len(reviewed.evidence.embedding) // 4, "crop_file": str(out) if out else None,
    }  # fmt: skip
    if as_json:
        emit_json(info)
    else:
        click.echo(f"reviewed {r['id']} ({r['decision']}) by {reviewer}; crop {info['crop_file']}")
