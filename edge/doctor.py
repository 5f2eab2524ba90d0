"""`edge doctor`: one line per check of what a kiosk needs, so an admin sees what is wrong.

Each check returns (ok, detail); a check that raises is a failure with its message,
never a traceback.
"""

from __future__ import annotations

import shutil
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from edge.config import Config
from edge.keys import key_file_problem

MIN_FREE_BYTES = 500 * 1024 * 1024


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_key(cfg: Config) -> tuple[bool, str]:
    problem = key_file_problem(cfg.device.key_path)
    return (problem is None, problem or f"{cfg.device.key_path}: mode 600")


def check_disk(cfg: Config) -> tuple[bool, str]:
    free = shutil.disk_usage(cfg.device.state_dir).free
    return free >= MIN_FREE_BYTES, f"{free / 1e9:.1f} GB free in {cfg.device.state_dir}"


def check_models(cfg: Config) -> tuple[bool, str]:
    from edge.infer.manifest import load_manifest, verify_files

    manifest = load_manifest(cfg.face.models_dir)
    verify_files(manifest)
    entry = manifest.embedder_named(cfg.face.embedder)
    return (
        True,
        f"embedder {cfg.face.embedder} {entry.sha256[:12]}, sha256 of every model file checked",
    )


def check_camera(cfg: Config) -> tuple[bool, str]:
    """A frame from the configured camera; the replay camera fails the check, loudly.

    Replay serves files (the bundled sample faces when replay_path is ""): a kiosk on it
    would verify people against pictures, not against the person at the counter.
    """
    from edge.capture import open_camera

    camera = open_camera(cfg.camera)
    try:
        camera.start()
        frame = camera.capture()
        h, w = frame.rgb.shape[:2]
        backend = camera.describe().get("backend", cfg.camera.backend)
        if cfg.camera.backend == "replay":
            source = cfg.camera.replay_path or "the bundled SAMPLE faces"
            return False, (
                f"REPLAY camera, not a live one: frames come from {source} (frame {w}x{h});"
                ' a kiosk must set camera.backend = "picamera2" (replay is for edge demo and tests)'
            )
        return True, f"{backend}: frame {w}x{h}"
    finally:
        camera.stop()


def check_gpsd(cfg: Config) -> tuple[bool, str]:
    if not cfg.gps.enabled:
        return True, "disabled in config"
    with socket.create_connection((cfg.gps.host, cfg.gps.port), timeout=3) as sock:
        sock.settimeout(3)
        banner = sock.recv(4096).decode("utf-8", "replace")
    if '"class":"VERSION"' not in banner.replace(" ", ""):
        return False, f"{cfg.gps.host}:{cfg.gps.port} answered, but not like gpsd"
    return True, f"gpsd at {cfg.gps.host}:{cfg.gps.port}"


def check_broker(cfg: Config) -> tuple[bool, str]:
    """TLS to the broker with the kiosk's client certificate, without an MQTT session.

    A full MQTT CONNECT would take over the running daemon's session (the broker makes
    the certificate CN the client id), so this stops after TLS: a broker that refuses
    the certificate sends an alert on the first read, one that accepts it waits quietly
    for CONNECT.
    """
    m = cfg.mqtt
    if not m.enabled:
        return True, "disabled in config"
    with socket.create_connection((m.host, m.port), timeout=m.connect_timeout_s) as raw:
        if not m.tls:
            return True, f"{m.host}:{m.port} reachable (no TLS)"
        ctx = ssl.create_default_context(cafile=m.ca_file)
        ctx.load_cert_chain(m.cert_file, m.key_file)
        with ctx.wrap_socket(raw, server_hostname=m.host) as tls:
            tls.settimeout(1.5)
            try:
                data = tls.recv(1)
            except TimeoutError:
                return True, f"{m.host}:{m.port} TLS {tls.version()}, client certificate accepted"
            except ssl.SSLError as exc:
                return False, f"{m.host}:{m.port} refused the client certificate: {exc.reason}"
            if not data:
                return False, f"{m.host}:{m.port} closed the connection after TLS"
            return True, f"{m.host}:{m.port} TLS {tls.version()}"


GPS_TIME_WAIT_S = 5.0


def gps_time_now(cfg: Config, wait_s: float = GPS_TIME_WAIT_S) -> tuple[float | None, str]:
    """The receiver's time from a fresh gpsd fix, or None with why not."""
    if not cfg.gps.enabled:
        return None, "GPS disabled in config"
    from edge.capture.gps import GpsReader

    with GpsReader(cfg.gps) as reader:
        if not reader.wait_connected(min(3.0, wait_s)):
            return None, f"no gpsd at {cfg.gps.host}:{cfg.gps.port}"
        fix = reader.wait_for_fix(wait_s, fresh=True, with_time=True)
    if fix is None:
        return None, f"no GPS fix with time in {wait_s:.0f} s"
    return fix.gps_time_now(), f"GPS fix {fix.age_s():.1f} s old"


def clock_report(
    gps_time: float | None,
    gps_note: str,
    system_time: float,
    ntp: tuple[bool | None, str],
    tolerance_s: float,
) -> tuple[bool, str]:
    """Pure: the record clock a verification would get now, and how we know (doctor's line).

    ok only when records would carry `gps` or `ntp` time; `unsynced` is a failure.
    """
    from edge.capture.clock import choose_clock

    synced, how = ntp
    choice = choose_clock(gps_time, system_time, synced, tolerance_s)
    ntp_text = {True: "synchronised", False: "not synchronised", None: "unknown"}[synced]
    if choice.offset_s is not None:
        gps_text = f"system clock {choice.offset_s:+.1f} s from GPS ({gps_note})"
    else:
        gps_text = f"no GPS time ({gps_note})"
    detail = f"records get {choice.source} time: {choice.note}; NTP {ntp_text} ({how}); {gps_text}"
    return choice.source != "unsynced", detail


def check_clock(cfg: Config) -> tuple[bool, str]:
    import time

    from edge.capture.clock import ntp_state

    gps_time, gps_note = gps_time_now(cfg)
    return clock_report(gps_time, gps_note, time.time(), ntp_state(), cfg.gps.clock_tolerance_s)


def check_officers(cfg: Config) -> tuple[bool, str]:
    """The kiosk screen's sign-in list; without it officers cannot sign in."""
    from edge.ui.officers import load_officers

    officers = load_officers(cfg.ui.officers_file)
    return True, f"{cfg.ui.officers_file}: {len(officers)} officer(s)"


CHECKS: list[tuple[str, Callable[[Config], tuple[bool, str]]]] = [
    ("key", check_key),
    ("disk", check_disk),
    ("models", check_models),
    ("camera", check_camera),
    ("gpsd", check_gpsd),
    ("broker", check_broker),
    ("clock", check_clock),
    ("officers", check_officers),
]


def run_checks(cfg: Config) -> list[CheckResult]:
    results = []
    for name, fn in CHECKS:
        try:
            ok, detail = fn(cfg)
        except Exception as exc:  # a failed check is a line, not a crash
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        results.append(CheckResult(name, ok, detail))
    return results
