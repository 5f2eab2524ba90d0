"""`edge roster import|show`: accept only bundles HQ signed for this embedder."""

from __future__ import annotations

from pathlib import Path

import click
from nacl.signing import VerifyKey

from edge.cli.common import config_option, emit_json, get_config, json_option
from edge.cli.records_cmd import open_store
from edge.config import Config, ConfigError
from edge.errors import DeviceMissing
from edge.keys import device_id_for, load_signing_key, verify_key_from_b64
from edge.roster import load_bundle_file, parse_bundle, verify_bundle
from edge.store import Store


def embedder_sha256(cfg: Config) -> str:
    """The sha256 of the embedder this kiosk runs, from the models manifest (no TFLite load)."""
    from edge.infer.manifest import load_manifest

    return load_manifest(cfg.face.models_dir).embedder_named(cfg.face.embedder).sha256


def hq_verify_key(cfg: Config) -> VerifyKey:
    if not cfg.hq.signing_public_key:
        raise ConfigError(cfg.source, "hq.signing_public_key", "not set: needed to verify rosters")
    return verify_key_from_b64(cfg.hq.signing_public_key)


@click.group("roster")
def roster_group() -> None:
    """Import and inspect roster bundles."""


@roster_group.command("import")
@config_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def import_cmd(file: Path, as_json: bool) -> None:
    """Verify a signed bundle (HQ key, embedder, device) and store its entries."""
    cfg = get_config()
    obj = load_bundle_file(file)
    parsed = parse_bundle(obj, str(file))  # a malformed file is named before models or keys
    device_id = None
    if cfg.device.key_path.exists():
        device_id = device_id_for(load_signing_key(cfg.device.key_path).verify_key)
    elif parsed.device_id != "*":
        # without a key this kiosk has no id to compare: a bundle built for another kiosk
        # would be imported and served
        raise DeviceMissing(
            f"{file}: device_id: bundle is for {parsed.device_id}, and this kiosk has no "
            f"device key yet ({cfg.device.key_path}); run `edge keys init` and register the "
            "kiosk at HQ first"
        )
    bundle = verify_bundle(obj, hq_verify_key(cfg), embedder_sha256(cfg), device_id, str(file))
    store = Store(cfg.device.db_path, cfg.store.busy_timeout_ms)
    n = store.import_bundle(bundle)
    store.log_event("roster_imported", bundle_id=bundle.bundle_id, entries=n, source="file")
    if as_json:
        emit_json({"bundle_id": bundle.bundle_id, "entries": n})
    else:
        click.echo(f"imported bundle {bundle.bundle_id}: {n} entries")


@roster_group.command("show")
@config_option
@json_option
def show_cmd(as_json: bool) -> None:
    """What roster the kiosk holds now."""
    summary = open_store().roster_summary()
    if as_json:
        emit_json(summary)
    else:
        for k, v in summary.items():
            click.echo(f"{k:<10} {v}")
