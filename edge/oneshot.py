"""`edge verify` without a daemon: one verification in this process, then exit.

For an officer's one-off check (or a photo given with --image). The uplink is not
started: the record waits in the outbox for the daemon to send it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edge.config import Config
from edge.errors import BadInput
from edge.health import Health
from edge.integrity import open_kiosk_store
from edge.keys import box_public_from_b64, device_id_for, load_signing_key
from edge.parts import build_parts
from edge.store import OutboxLimits
from edge.verification import BadRequest, Verifier, parse_request


def verify_once(cfg: Config, request: dict[str, Any], image: Path | None) -> dict[str, Any]:
    try:
        req = parse_request(request)
    except BadRequest as exc:
        raise BadInput(str(exc)) from None
    camera = cfg.camera
    if image is not None:
        camera = dataclasses.replace(
            camera, backend="replay", replay_path=str(image), replay_loop=True
        )
    local = dataclasses.replace(
        cfg, camera=camera, mqtt=dataclasses.replace(cfg.mqtt, enabled=False)
    )
    key = load_signing_key(cfg.device.key_path)
    device_id = device_id_for(key.verify_key)
    store = open_kiosk_store(cfg.device.db_path, cfg.store.busy_timeout_ms, key, device_id)
    parts = build_parts(local, store, device_id, Health())
    try:

        def burst(n: int) -> list[Any]:
            return [f.rgb for f in parts.camera.burst(n)]

        verifier = Verifier(
            store=store,
            decider=parts.pipeline,
            burst=burst,
            burst_frames=cfg.face.burst_frames,
            where=parts.where,
            when=parts.when,
            key=key,
            device_id=device_id,
            hq_box_key=(
                box_public_from_b64(cfg.hq.sealing_public_key)
                if cfg.hq.sealing_public_key
                else None
            ),
            limits=OutboxLimits(cfg.outbox.max_rows, cfg.outbox.max_bytes),
            challenge=parts.challenge(),
            camera=parts.camera_backend(),
            max_attempts=cfg.ui.max_attempts,
        )
        try:
            return verifier.verify(req)
        except BadRequest as exc:
            raise BadInput(str(exc)) from None
    finally:
        parts.close()
        store.close()
