"""`edge run`: the composition root. `App` builds the parts, owns the threads and hands
each part only the narrow interface it needs.

Parts and their interfaces: the verification flow gets callables (burst, where, when,
challenge) over the current Parts; the uplink gets `status_extra`, a late-bound call into
the App, so a reload that keeps the uplink never leaves it asking replaced parts; the
screen (edge/ui/kiosk.py) gets `KioskHost` (edge/ui/host.py), which the App implements;
the API gets `ApiBackend`; roster payloads go to a RosterInbox (edge/roster_inbox.py).
Threads: camera probe, watchdog, housekeeping (purge of acked records past retention,
the store's quick_check; edge/housekeeping.py), the GPS reader and the uplink's session. A reload builds new Parts (reusing unchanged ones) and a
new Verifier sharing the old one's lock.

Start order follows what READY promises: store open and models loaded before
READY=1; the watchdog is pinged only while every part beats (health.py).
SIGTERM finishes the verification in progress, publishes the offline status and
exits 0; SIGHUP reloads the config and keeps the old one if the new one is bad.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from edge import __version__
from edge.api import ApiLimits, ApiServer
from edge.config import Config, ConfigError, UiConfig, check_files, load_config
from edge.errors import DeviceMissing
from edge.health import ApiProbe, DiskWatch, Health, is_disk_full
from edge.housekeeping import Chore, Housekeeping, purge_acked
from edge.integrity import open_kiosk_store
from edge.keys import box_public_from_b64, device_id_for, load_signing_key
from edge.notify import Notifier, watchdog_interval_s
from edge.parts import Parts, build_parts
from edge.store import OutboxFull, OutboxLimits, StoreIntegrityError
from edge.ui.host import NotReady
from edge.ui.kiosk import KioskUi, Reply
from edge.verification import AttemptsUsed, BadRequest, Verifier, parse_request

log = logging.getLogger(__name__)

CAMERA_PROBE_S = 2.0
STORE_CHECK_S = 600.0  # PRAGMA quick_check of the store this often (and at start)
API_PROBE_TIMEOUT_S = 3.0


@dataclass
class _Signals:
    stop: threading.Event
    reload: threading.Event


class App:
    """The kiosk service and its composition root; `serve()` blocks until SIGTERM/SIGINT."""

    def __init__(self, cfg: Config, notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self.beats = Health()
        self.started = time.time()
        self.signals = _Signals(threading.Event(), threading.Event())
        self.key = load_signing_key(cfg.device.key_path)
        self.device_id = device_id_for(self.key.verify_key)
        # refuses (exit 3) a lost, emptied, truncated or corrupted store: see edge/integrity.py
        self.store = open_kiosk_store(
            cfg.device.db_path, cfg.store.busy_timeout_ms, self.key, self.device_id
        )
        self.store_problem: str | None = None
        self.parts: Parts | None = None
        self.verifier: Verifier | None = None
        self.api: ApiServer | None = None
        self.state = "starting"
        self._threads: list[threading.Thread] = []
        self._camera_lock = threading.Lock()
        self._verify_lock = threading.Lock()  # one verification at a time, across reloads
        self.api_probe: ApiProbe | None = None
        self.disk = DiskWatch(cfg.device.state_dir)
        self.housekeeping: Housekeeping | None = None
        self.ui = KioskUi(self)

    # -- life cycle ------------------------------------------------------------
    def start(self) -> None:
        # bind first: a port in use ends the start before models load or the uplink runs
        self.api = open_api(self.cfg, self)
        self.notifier.status("loading models")
        self.parts = build_parts(
            self.cfg, self.store, self.device_id, self.beats, status_extra=self._uplink_extra
        )
        self.verifier = self._make_verifier(self.cfg, self.parts)
        self.api.start()
        self.api_probe = ApiProbe(self.api.address)
        self.beats.register("camera", max(10.0, self.cfg.camera.frame_timeout_s * 3))
        self.beats.register("main", 30.0)
        for name, target in (("camera-probe", self._camera_probe), ("watchdog", self._watchdog)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self.housekeeping = Housekeeping(
            [
                Chore(
                    "purge",
                    lambda: self.cfg.outbox.purge_interval_s,
                    lambda: purge_acked(self.store, self.cfg.outbox.retention_days),
                ),
                # at start open_kiosk_store has just checked the store
                Chore("store check", lambda: STORE_CHECK_S, self.check_store, time.monotonic()),
            ]
        ).start()
        self.state = "ready"
        self.ui.book()  # a bad officers file is logged now; the screen says sign-in is off
        self.store.log_event("daemon_started", version=__version__)
        self.notifier.ready(self.status_line())
        log.info("ready: device %s, api %s", self.device_id, self.api.address)

    def _make_verifier(self, cfg: Config, parts: Parts) -> Verifier:
        hq_box = (
            box_public_from_b64(cfg.hq.sealing_public_key) if cfg.hq.sealing_public_key else None
        )
        if hq_box is None:
            log.warning("hq.sealing_public_key not set: records carry no evidence")
        return Verifier(
            store=self.store,
            decider=parts.pipeline,
            burst=self._burst,
            burst_frames=cfg.face.burst_frames,
            where=parts.where,
            when=parts.when,
            key=self.key,
            device_id=self.device_id,
            hq_box_key=hq_box,
            limits=OutboxLimits(cfg.outbox.max_rows, cfg.outbox.max_bytes),
            challenge=parts.challenge(self._camera_lock),
            camera=parts.camera_backend(),
            max_attempts=cfg.ui.max_attempts,
            lock=self._verify_lock,
        )

    def _uplink_extra(self) -> dict[str, Any]:
        """The retained status's extras from the parts running now (not those of a reload ago)."""
        parts = self.parts
        return parts.uplink_extra() if parts is not None else {}

    def serve(self) -> int:
        """Install signal handlers, start, and wait; returns the exit code."""
        signal.signal(signal.SIGTERM, lambda *_: self.signals.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.signals.stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self.signals.reload.set())
        self.start()
        while not self.signals.stop.is_set():
            self.signals.stop.wait(0.5)
            self.beats.beat("main")
            if self.signals.reload.is_set():
                self.signals.reload.clear()
                self.reload()
        self.stop()
        return 0

    def stop(self) -> None:
        self.state = "stopping"
        self.notifier.stopping("stopping: finishing the verification in progress")
        with self._verify_lock:  # waits for the verification in progress
            pass
        if self.api is not None:
            self.api.stop()
        if self.housekeeping is not None:
            self.housekeeping.stop()
        # the probe and watchdog threads end before the parts they use are closed (a probe
        # left running grabbed from the stopped camera: "capture() before start()")
        self.signals.stop.set()
        for t in self._threads:
            t.join(self.cfg.camera.frame_timeout_s + API_PROBE_TIMEOUT_S)
        if self.parts is not None:
            self.parts.close()
        self.store.log_event("daemon_stopped")
        self.store.close()
        log.info("stopped")

    def reload(self) -> None:
        """Re-read the config file; a bad one is refused and the running config stays."""
        self.notifier.reloading()
        try:
            new = load_config(self.cfg.source)
            check_files(new)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            self.store.log_event("reload_refused", error=str(exc))
            self.notifier.status(f"reload refused: {exc}; {self.status_line()}")
            self.notifier.send("READY=1")
            return
        assert self.parts is not None and self.verifier is not None
        with self._verify_lock, self._camera_lock:
            old_parts = self.parts
            try:
                self.parts = build_parts(
                    new,
                    self.store,
                    self.device_id,
                    self.beats,
                    old_parts,
                    status_extra=self._uplink_extra,
                )
            except Exception as exc:
                log.error("reload failed, keeping the running config: %s", exc)
                self.store.log_event("reload_refused", error=str(exc))
                self.notifier.send("READY=1")
                return
            old_parts.close(keep=self.parts)
            self.cfg = new
            self.verifier = self._make_verifier(new, self.parts)
        self.store.log_event("config_reloaded")
        log.info("config reloaded from %s", new.source)
        self.notifier.send("READY=1")
        self.notifier.status(self.status_line())

    # -- camera health ---------------------------------------------------------
    def _burst(self, n: int) -> list[Any]:
        assert self.parts is not None
        with self._camera_lock:
            frames = self.parts.camera.burst(n)
        self.beats.beat("camera")
        return [f.rgb for f in frames]

    def _camera_probe(self) -> None:
        """Grab a frame now and then while idle: a camera that stops delivering goes unhealthy."""
        while not self.signals.stop.is_set():
            if self.parts is not None and self._camera_lock.acquire(timeout=0.1):
                try:
                    self.parts.camera.capture()
                    self.beats.beat("camera")
                except Exception as exc:
                    log.warning("camera probe failed: %s", exc)
                finally:
                    self._camera_lock.release()
            self.signals.stop.wait(CAMERA_PROBE_S)

    def check_store(self) -> str | None:
        """Housekeeping: SQLite's quick_check; a failure marks health failed for good (the
        watchdog then stops, systemd restarts the daemon, and the start check refuses)."""
        bad = self.store.quick_check()
        if bad is not None and self.store_problem is None:
            self.store_problem = f"store failed its integrity check: {bad}"
            log.error("%s; refusing verifications", self.store_problem)
        return self.store_problem

    def _watchdog(self) -> None:
        interval = watchdog_interval_s() or 5.0
        last_status = ""
        while not self.signals.stop.is_set():
            if self.api_probe is not None:
                # a real request to our own socket: a starved or wedged API stops the pings
                self.api_probe.check(min(API_PROBE_TIMEOUT_S, interval / 2))
            if not self._watchdog_problems():
                self.notifier.watchdog()
            problems = self.health()
            line = self.status_line() if not problems else "unhealthy: " + "; ".join(problems)
            if line != last_status:
                self.notifier.status(line)
                last_status = line
            self.signals.stop.wait(min(interval, 5.0))

    # -- ApiBackend ------------------------------------------------------------
    def verify(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.state != "ready" or self.verifier is None:
            return 503, {"error": f"daemon is {self.state}"}
        if self.store_problem is not None:
            return 503, {"error": self.store_problem}
        try:
            req = parse_request(request)
            answer = self.verifier.verify(req)
            self.disk.stored()
            if self.parts is not None and self.parts.uplink is not None:
                self.parts.uplink.wake()
            return 200, answer
        except BadRequest as exc:
            return 400, {"error": str(exc)}
        except AttemptsUsed as exc:
            return 409, {
                "error": str(exc),
                "error_key": "attempts_used",
                "manual_allowed": True,
                "max_attempts": exc.max_attempts,
            }
        except StoreIntegrityError as exc:
            self.store_problem = str(exc)
            log.error("%s", exc)
            return 503, {"error": str(exc)}
        except OutboxFull as exc:
            log.error("%s", exc)
            return 507, {"error": str(exc), "decision": None}
        except (sqlite3.OperationalError, OSError) as exc:
            if not is_disk_full(exc):
                raise
            self.disk.failed(exc)
            log.error(
                "verification not stored: disk full in %s: %s", self.cfg.device.state_dir, exc
            )
            return 507, {
                "error": f"disk full: nothing stored ({self.cfg.device.state_dir}: {exc})",
                "error_key": "disk_full",
                "decision": None,
            }

    # -- KioskHost (edge/ui/host.py): what the screen may ask of the kiosk ------------
    def ui_config(self) -> UiConfig:
        return self.cfg.ui

    def record_time(self) -> float | None:
        parts = self.parts
        return parts.when()[0] if parts is not None else None

    def frames(self, n: int, wait_s: float) -> list[Any] | None:
        parts = self.parts
        if parts is None or not self._camera_lock.acquire(timeout=wait_s):
            return None
        try:
            return [parts.camera.capture().rgb for _ in range(n)]
        finally:
            self._camera_lock.release()

    def analyse_live(self, wait_s: float) -> tuple[str, str | None] | None:
        """Guidance's look at a frame; the TFLite interpreters are not thread-safe, so it
        takes the verification lock without waiting long and answers None (busy) instead."""
        parts = self.parts
        if self.verifier is None or parts is None:
            raise NotReady(self.state)
        if not self._verify_lock.acquire(timeout=wait_s):
            return None
        try:
            frames = self.frames(1, wait_s)
            if frames is None:
                return None
            result = parts.pipeline.analyse(frames[0])
        finally:
            self._verify_lock.release()
        return result.status, result.reason

    def progress(self) -> dict[str, Any]:
        if self.verifier is None:
            raise NotReady(self.state)
        return self.verifier.progress()

    def ui_handle(self, method: str, path: str, token: str | None, body: dict[str, Any]) -> Reply:
        """The kiosk screen's endpoints (edge/ui/kiosk.py)."""
        if self.state != "ready":
            return Reply(503, {"error": f"daemon is {self.state}", "error_key": "not_ready"})
        try:
            return self.ui.handle(method, path, token, body)
        except (sqlite3.OperationalError, OSError) as exc:  # e.g. an audit event on a full disk
            if not is_disk_full(exc):
                raise
            self.disk.failed(exc)
            message = f"disk full: nothing stored ({self.cfg.device.state_dir}: {exc})"
            return Reply(507, {"error": message, "error_key": "outbox_full"})

    def health(self) -> list[str]:
        """What is wrong now (empty when healthy): what stops the watchdog, and a full disk.

        A full disk is reported (GET /v1/health answers 503) but does not stop the watchdog:
        a restart frees no space, and the daemon still answers and refuses with 507.
        """
        problems = self._watchdog_problems()
        disk = self.disk.problem()
        return [*problems, disk] if disk else problems

    def _watchdog_problems(self) -> list[str]:
        """Silent parts, an API that does not answer, and parts' own reports."""
        problems = self.beats.problems()
        if self.store_problem is not None:
            problems.append(self.store_problem)
        if self.api_probe is not None and self.api_probe.problem:
            problems.append(self.api_probe.problem)
        if self.parts is not None:
            problems += self.parts.problems()
        if self.housekeeping is not None and not self.housekeeping.alive:
            problems.append("housekeeping thread stopped")
        return problems

    def status_line(self) -> str:
        s = self.status()
        q = s.get("outbox", {})
        return (
            f"{s['state']}; queue {q.get('pending', 0) + q.get('sent', 0)}; "
            f"broker {'up' if s.get('broker', {}).get('connected') else 'down'}; "
            f"gps {s.get('gps', {}).get('state', 'off')}"
        )

    def status(self) -> dict[str, Any]:
        cfg = self.cfg
        parts = self.parts
        disk = shutil.disk_usage(cfg.device.state_dir)
        status: dict[str, Any] = {
            "device_id": self.device_id,
            "version": __version__,
            "state": self.state,
            "uptime_s": round(time.time() - self.started, 1),
            "problems": self.health(),
            "disk_free_bytes": disk.free,
            "roster": self.store.roster_summary(),
        }
        if parts is not None:
            status.update(parts.status())
        return status


Daemon = App  # the name the CLI, the demo and the tests know


def open_api(cfg: Config, backend: App) -> ApiServer:
    """Bind the local API; a port in use or a bad socket path names api.listen (exit 3)."""
    a = cfg.api
    limits = ApiLimits(
        workers=a.workers,
        write_workers=a.write_workers,
        max_connections=a.max_connections,
        request_timeout_s=a.request_timeout_s,
        idle_timeout_s=a.idle_timeout_s,
    )
    try:
        return ApiServer(a.listen, backend, a.max_body_bytes, limits)
    except OSError as exc:
        raise DeviceMissing(
            f"{cfg.source}: api.listen {a.listen}: cannot listen: {exc.strerror or exc}"
            + (" (another edge run, or another program, holds it)" if exc.errno == 98 else "")
        ) from None


def run(cfg: Config) -> int:
    return App(cfg).serve()
