"""The device-facing parts of a running kiosk, built from one config.

This is where capture, infer and uplink meet (they never import each other): the
face pipeline, the camera, the GPS reader and the MQTT uplink (with the roster handler
it hands roster payloads to), plus the two small
closures the verification flow asks for: where (geo + geofence) and when (time +
clock source). A reload builds new Parts, reusing every part whose config section
did not change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from edge.capture import Camera, open_camera
from edge.capture.clock import NtpCache
from edge.capture.geotag import when as geotag_when
from edge.capture.geotag import where as geotag_where
from edge.capture.gps import GpsReader
from edge.config import Config
from edge.health import Health
from edge.infer.challenge import ChallengeLimits, plan_challenge, run_challenge
from edge.infer.pipeline import FacePipeline
from edge.keys import verify_key_from_b64
from edge.roster_inbox import RosterInbox
from edge.store import Store
from edge.uplink.outbox import Outbox
from edge.uplink.service import Uplink

log = logging.getLogger(__name__)

UPLINK_SILENCE_S = 60.0


class Parts:
    """Pipeline, camera, GPS reader and uplink of one config, and the closures over them."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        pipeline: FacePipeline,
        camera: Camera,
        gps: GpsReader | None,
        uplink: Uplink | None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.pipeline = pipeline
        self.camera = camera
        self.gps = gps
        self.uplink = uplink
        self._ntp = NtpCache()

    # -- the closures the verifier asks for -----------------------------------
    def where(self, place: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
        fix = self.gps.current() if self.gps is not None else None
        return geotag_where(fix, place)

    def when(self) -> tuple[float, str]:
        fix = self.gps.current() if self.gps is not None else None
        choice = geotag_when(fix, self.cfg.gps.clock_tolerance_s, ntp=self._ntp)
        return choice.time, choice.source

    # -- health and status ----------------------------------------------------
    def problems(self) -> list[str]:
        out = []
        if self.gps is not None and not self.gps.alive:
            out.append("gps reader thread stopped")
        if self.uplink is not None and not self.uplink.alive:
            out.append("uplink thread stopped")
        return out

    def status(self) -> dict[str, Any]:
        """The parts' share of `edge status` (no image or biometric data)."""
        if self.uplink is not None:
            outbox = self.uplink.stats()
            broker = {
                "connected": self.uplink.connected,
                "host": f"{self.cfg.mqtt.host}:{self.cfg.mqtt.port}",
            }
        else:
            outbox = (
                Outbox(self.store, self.cfg.outbox.max_rows, self.cfg.outbox.max_bytes)
                .stats()
                .as_dict()
            )
            broker = {"connected": False, "host": None, "note": "mqtt disabled in config"}
        since = self.camera.seconds_since_frame()
        gps: dict[str, Any] = (
            self.gps.status()
            if self.gps is not None
            else {"state": "off", "note": "gps disabled in config"}
        )
        if self.gps is None:
            _t, source = self.when()
            gps["clock"] = {"source": source, "offset_s": None}
        return {
            "outbox": outbox,
            "broker": broker,
            "gps": gps,
            "clock": gps.get("clock"),
            "camera": {
                **self.camera.describe(),
                "seconds_since_frame": None if since is None else round(since, 1),
            },
            "model": self.pipeline.describe(),
        }

    def camera_backend(self) -> str | None:
        """The camera backend's name as records carry it (picamera2 or replay)."""
        backend = self.camera.describe().get("backend", self.cfg.camera.backend)
        return str(backend) if backend in ("picamera2", "replay") else None

    def challenge(
        self, lock: AbstractContextManager[Any] | threading.Lock | None = None
    ) -> Callable[[Callable[[str | None, int, float], None]], dict[str, Any]] | None:
        """The active liveness challenge as the verification flow calls it, or None (off).

        It holds the camera (under `lock`) while it samples the subject's head pose.
        """
        live = self.cfg.liveness
        if live.challenge == "off" or self.pipeline.liveness is None:
            return None
        limits = ChallengeLimits(turn_yaw=live.challenge_turn, time_limit_s=live.challenge_s)
        pipeline, camera = self.pipeline, self.camera

        def run(on_step: Callable[[str | None, int, float], None]) -> dict[str, Any]:
            steps = plan_challenge(live.challenge)
            with lock if lock is not None else nullcontext():
                tracker = run_challenge(
                    steps,
                    lambda: pipeline.pose(camera.burst(1)[0].rgb),
                    limits=limits,
                    on_step=on_step,
                )
            log.info("liveness challenge %s: %s", "passed" if tracker.passed else "failed", steps)
            return {
                **tracker.summary(),
                "threshold": pipeline.liveness_policy.threshold,
                "models": list(pipeline.liveness.sha256s) if pipeline.liveness else [],
            }

        return run

    def uplink_extra(self) -> dict[str, Any]:
        """What the retained MQTT status carries besides the outbox figures."""
        gps = self.gps.status() if self.gps is not None else {"state": "off"}
        return {
            "gps": {"state": gps.get("state"), "fix": gps.get("fix")},
            "clock": gps.get("clock") or {"source": self.when()[1]},
            "model": self.pipeline.embedder_sha256,
            "camera": self.camera.describe().get("backend"),
            # the chain's signed head: HQ keeps the newest and flags records it never got
            "head": self.store.signed_head(),
        }

    def close(self, keep: Parts | None = None) -> None:
        """Stop every part that `keep` (the parts that replace these) does not reuse."""
        if self.uplink is not None and (keep is None or keep.uplink is not self.uplink):
            self.uplink.publish_offline()
            self.uplink.stop()
        if self.gps is not None and (keep is None or keep.gps is not self.gps):
            self.gps.stop()
        if keep is None or keep.camera is not self.camera:
            try:
                self.camera.stop()
            except Exception as exc:
                log.warning("camera stop failed: %s", exc)


def build_parts(
    cfg: Config,
    store: Store,
    device_id: str,
    health: Health,
    old: Parts | None = None,
    *,
    status_extra: Callable[[], dict[str, Any]] | None = None,
) -> Parts:
    """Build (or, on reload, reuse) each part; models are loaded and checked before return.

    `status_extra` is what the uplink's retained status carries besides its own figures.
    The caller passes a late-bound call (the App's, reading whichever Parts run now): an
    uplink kept over a reload must not keep asking the Parts it was built with, whose GPS
    reader or camera the reload may have stopped. Without it, these Parts' own extras.
    """
    started = time.monotonic()
    if old is not None and (old.cfg.face, old.cfg.liveness) == (cfg.face, cfg.liveness):
        pipeline = old.pipeline
    else:
        pipeline = FacePipeline.from_config(cfg.face, liveness_cfg=cfg.liveness)
    if old is not None and old.cfg.camera == cfg.camera:
        camera = old.camera
    else:
        camera = open_camera(cfg.camera)
        camera.start()
    gps: GpsReader | None = None
    if cfg.gps.enabled:
        if old is not None and old.gps is not None and old.cfg.gps == cfg.gps:
            gps = old.gps
        else:
            gps = GpsReader(cfg.gps).start()
    parts = Parts(cfg, store, pipeline, camera, gps, None)
    if cfg.mqtt.enabled:
        parts.uplink = _uplink(parts, device_id, health, old, status_extra or parts.uplink_extra)
    else:
        health.unregister("uplink")
    log.info(
        "parts ready in %.1fs: camera %s, gps %s, uplink %s",
        time.monotonic() - started,
        cfg.camera.backend,
        "on" if gps else "off",
        "on" if parts.uplink else "off",
    )
    return parts


def _uplink(
    parts: Parts,
    device_id: str,
    health: Health,
    old: Parts | None,
    status_extra: Callable[[], dict[str, Any]],
) -> Uplink | None:
    """The old uplink when its sections and the embedder are unchanged, else a new one."""
    cfg, store, pipeline = parts.cfg, parts.store, parts.pipeline
    if (
        old is not None
        and old.uplink is not None
        and (old.cfg.mqtt, old.cfg.outbox, old.cfg.hq) == (cfg.mqtt, cfg.outbox, cfg.hq)
        and old.pipeline is pipeline
    ):
        return old.uplink
    if old is not None and old.uplink is not None:
        old.uplink.stop()  # one MQTT session per device id: stop before the new one
    hq_key = verify_key_from_b64(cfg.hq.signing_public_key) if cfg.hq.signing_public_key else None
    health.register("uplink", max(UPLINK_SILENCE_S, cfg.mqtt.connect_timeout_s + 10))
    uplink = Uplink(
        store,
        cfg.mqtt,
        cfg.outbox,
        device_id,
        hq_key,
        pipeline.embedder_sha256,
        status_extra,
        beat=lambda: health.beat("uplink"),
        # roster payloads are imported by the daemon's handler, not by the uplink
        roster=RosterInbox(store, hq_key, pipeline.embedder_sha256, device_id),
    )
    uplink.start()
    return uplink
