"""One typed, frozen configuration object loaded from TOML and validated once at start.

Every section is a frozen dataclass; a field's metadata carries its bounds or
choices so that the loader can refuse impossible values with a message a fleet
admin understands (file, key, what is expected).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.typed_toml import ConfigError, build_settings, choices, read_toml, rng

DEFAULT_CONFIG_PATH = Path("/etc/bansos-edge/edge.toml")
CONFIG_ENV = "BANSOS_EDGE_CONFIG"


@dataclass(frozen=True)
class DeviceConfig:
    """Where the kiosk keeps its state (database, device key)."""

    state_dir: str = "/var/lib/bansos-edge"
    label: str = ""

    @property
    def key_path(self) -> Path:
        return Path(self.state_dir) / "device.key"

    @property
    def db_path(self) -> Path:
        return Path(self.state_dir) / "edge.db"


@dataclass(frozen=True)
class HqConfig:
    """HQ's public keys: Ed25519 for roster signatures, X25519 for sealing evidence."""

    signing_public_key: str = ""
    sealing_public_key: str = ""


@dataclass(frozen=True)
class StoreConfig:
    busy_timeout_ms: int = field(default=5000, metadata=rng(0, 600_000))


# FMR 1e-3 operating points on faces-dev for 1, 2 and 3+ reference templates, per
# embedder (docs/accuracy.md). A threshold belongs to its embedder: choosing another
# embedder without setting thresholds takes that embedder's values.
EMBEDDER_THRESHOLDS: dict[str, tuple[float, float, float]] = {
    "sface": (0.365, 0.381, 0.389),
    "edgeface_xs": (0.263, 0.280, 0.290),
}
EMBEDDERS = tuple(EMBEDDER_THRESHOLDS)
DEFAULT_EMBEDDER = "sface"
_THRESHOLD_KEYS = ("threshold", "threshold_2_templates", "threshold_3_templates")


@dataclass(frozen=True)
class FaceConfig:
    """The face pipeline: models, runtime, quality gates and the calibrated threshold."""

    models_dir: str = ""
    # which embedder of the manifest (MODEL_CARD.md); its calibrated thresholds below are
    # filled in from EMBEDDER_THRESHOLDS unless the file sets them
    embedder: str = field(default=DEFAULT_EMBEDDER, metadata=choices(*EMBEDDERS))
    runtime: str = field(default="auto", metadata=choices("auto", "tflite_runtime", "litert"))
    threads: int = field(default=2, metadata=rng(1, 16))
    threshold: float = field(default=0.365, metadata=rng(-1.0, 1.0))
    # A KPM with more templates (registry photo + earlier captures) gets more chances to
    # match by luck, so each count has its own FMR 1e-3 point (docs/accuracy.md).
    threshold_2_templates: float = field(default=0.381, metadata=rng(-1.0, 1.0))
    threshold_3_templates: float = field(default=0.389, metadata=rng(-1.0, 1.0))
    detector_score: float = field(default=0.6, metadata=rng(0.05, 0.99))
    min_face_px: int = field(default=60, metadata=rng(16, 2000))
    min_sharpness: float = field(default=20.0, metadata=rng(0.0, 1e6))
    max_pose: float = field(default=0.45, metadata=rng(0.0, 2.0))
    min_brightness: float = field(default=40.0, metadata=rng(0.0, 255.0))
    max_brightness: float = field(default=220.0, metadata=rng(0.0, 255.0))
    burst_frames: int = field(default=5, metadata=rng(1, 60))
    min_good_frames: int = field(default=1, metadata=rng(1, 60))


@dataclass(frozen=True)
class LivenessConfig:
    """Presentation-attack detection (MiniFASNet pair) on every face verification.

    The threshold is on the fused "real" probability, calibrated on pad-dev (MODEL_CARD.md);
    a burst is live only when enough of its judged frames reach it (edge/infer/liveness.py).
    """

    enabled: bool = True
    # chosen on half of pad-dev's subjects at BPCER 1% per presentation (MODEL_CARD.md)
    threshold: float = field(default=0.377, metadata=rng(0.0, 1.0))
    min_live_frames: int = field(default=2, metadata=rng(1, 60))
    min_live_fraction: float = field(default=0.5, metadata=rng(0.0, 1.0))
    # Liveness quality gates (edge/infer/pad_gates.py, docs/liveness/conditions.md): a frame
    # failing one is not judged; 1.0 / 255.0 / 0 switch a gate off.
    max_clipped: float = field(default=0.5, metadata=rng(0.0, 1.0))
    max_noise: float = field(default=4.0, metadata=rng(0.0, 255.0))
    min_face_px: int = field(default=0, metadata=rng(0, 2000))
    min_sharpness: float = field(default=0.0, metadata=rng(0.0, 1e6))
    # active challenge before the burst: "turn" asks for a head turn left and right in a
    # random order (edge/infer/challenge.py); "off" relies on the passive models alone
    challenge: str = field(default="off", metadata=choices("off", "turn"))
    challenge_s: float = field(default=10.0, metadata=rng(3.0, 60.0))
    challenge_turn: float = field(default=0.35, metadata=rng(0.15, 0.8))


@dataclass(frozen=True)
class CameraConfig:
    """Which camera backend to use. A kiosk has a camera module (picamera2, the default);
    "replay" (files, the bundled sample faces when replay_path is "") is for `edge demo`,
    tests and development, and must be chosen explicitly."""

    backend: str = field(default="picamera2", metadata=choices("replay", "picamera2"))
    replay_path: str = ""
    replay_loop: bool = True
    width: int = field(default=1280, metadata=rng(160, 4608))
    height: int = field(default=960, metadata=rng(120, 3456))
    settle_s: float = field(default=1.0, metadata=rng(0.0, 30.0))
    autofocus: bool = True
    frame_timeout_s: float = field(default=3.0, metadata=rng(0.1, 120.0))


@dataclass(frozen=True)
class GpsConfig:
    """gpsd connection and how old or imprecise a fix may be."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=2947, metadata=rng(1, 65535))
    max_fix_age_s: float = field(default=10.0, metadata=rng(0.1, 3600.0))
    reconnect_min_s: float = field(default=0.5, metadata=rng(0.05, 60.0))
    reconnect_max_s: float = field(default=30.0, metadata=rng(0.1, 3600.0))
    clock_tolerance_s: float = field(default=2.0, metadata=rng(0.1, 3600.0))


@dataclass(frozen=True)
class MqttConfig:
    """Broker, mTLS files and the session and backoff policy."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=8883, metadata=rng(1, 65535))
    tls: bool = True
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    topic_prefix: str = "kiosk"
    keepalive_s: int = field(default=15, metadata=rng(5, 3600))
    session_expiry_s: int = field(default=7 * 86400, metadata=rng(0, 4_294_967_295))
    inflight: int = field(default=100, metadata=rng(1, 1000))
    reconnect_min_s: float = field(default=1.0, metadata=rng(0.05, 600.0))
    reconnect_max_s: float = field(default=60.0, metadata=rng(0.1, 86400.0))
    connect_timeout_s: float = field(default=10.0, metadata=rng(0.5, 600.0))
    status_interval_s: float = field(default=60.0, metadata=rng(1.0, 86400.0))


@dataclass(frozen=True)
class OutboxConfig:
    """Bounds and timers of the durable outbox."""

    max_rows: int = field(default=200_000, metadata=rng(1, 100_000_000))
    max_bytes: int = field(default=1_073_741_824, metadata=rng(1024, 1 << 40))
    resend_after_s: float = field(default=120.0, metadata=rng(1.0, 86400.0))
    retention_days: float = field(default=30.0, metadata=rng(0.0, 3650.0))
    purge_interval_s: float = field(default=3600.0, metadata=rng(1.0, 86400.0))


@dataclass(frozen=True)
class ApiConfig:
    """The local verification API used by the kiosk screen and `edge verify`."""

    listen: str = "127.0.0.1:8470"
    # A non-loopback listen address lets anyone on that network call /v1/verify without a
    # token (the local CLI's form): refused unless this is set (README "The local API").
    allow_remote: bool = False
    max_body_bytes: int = field(default=65536, metadata=rng(256, 16_777_216))
    # fixed pools: GET (status, health, screen files) and POST (verify, sign-in, scan)
    workers: int = field(default=3, metadata=rng(1, 16))
    write_workers: int = field(default=2, metadata=rng(1, 16))
    # open connections; past it the one idle the longest is closed
    max_connections: int = field(default=2048, metadata=rng(16, 65536))
    # a request's headers and body must arrive within this (slow clients are cut off)
    request_timeout_s: float = field(default=10.0, metadata=rng(0.5, 300.0))
    # a keep-alive connection with no request in progress is closed after this
    idle_timeout_s: float = field(default=120.0, metadata=rng(1.0, 3600.0))


@dataclass(frozen=True)
class UiConfig:
    """The officer's kiosk screen: who may sign in, retry and lockout limits, language."""

    officers_file: str = "/etc/bansos-edge/officers.toml"
    max_attempts: int = field(default=3, metadata=rng(1, 10))
    pin_lockout_after: int = field(default=3, metadata=rng(1, 20))
    lockout_s: float = field(default=300.0, metadata=rng(1.0, 86400.0))
    session_idle_s: float = field(default=600.0, metadata=rng(10.0, 86400.0))
    language: str = field(default="id", metadata=choices("id", "en"))


@dataclass(frozen=True)
class Config:
    """The whole kiosk configuration; `source` names the file it came from."""

    device: DeviceConfig = field(default_factory=DeviceConfig)
    hq: HqConfig = field(default_factory=HqConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    gps: GpsConfig = field(default_factory=GpsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    source: str = "<defaults>"


def _cross_checks(cfg: Config) -> None:
    path = cfg.source
    if cfg.face.min_brightness >= cfg.face.max_brightness:
        raise ConfigError(path, "face.min_brightness", "expected less than face.max_brightness")
    if not cfg.face.threshold <= cfg.face.threshold_2_templates <= cfg.face.threshold_3_templates:
        raise ConfigError(
            path,
            "face.threshold_2_templates",
            "expected face.threshold <= threshold_2_templates <= threshold_3_templates"
            " (more templates give more chances of a false match)",
        )
    if cfg.face.min_good_frames > cfg.face.burst_frames:
        raise ConfigError(path, "face.min_good_frames", "expected at most face.burst_frames")
    if cfg.liveness.enabled and cfg.liveness.min_live_frames > cfg.face.burst_frames:
        raise ConfigError(
            path,
            "liveness.min_live_frames",
            f"expected at most face.burst_frames ({cfg.face.burst_frames}): a burst could"
            " never be judged live",
        )
    if cfg.liveness.challenge != "off" and not cfg.liveness.enabled:
        raise ConfigError(
            path, "liveness.challenge", 'expected "off" when liveness.enabled is false'
        )
    if cfg.gps.reconnect_min_s > cfg.gps.reconnect_max_s:
        raise ConfigError(path, "gps.reconnect_min_s", "expected at most gps.reconnect_max_s")
    if cfg.mqtt.reconnect_min_s > cfg.mqtt.reconnect_max_s:
        raise ConfigError(path, "mqtt.reconnect_min_s", "expected at most mqtt.reconnect_max_s")
    if not cfg.device.state_dir:
        raise ConfigError(path, "device.state_dir", "expected a directory path")
    if cfg.mqtt.enabled and cfg.mqtt.tls:
        for key in ("ca_file", "cert_file", "key_file"):
            if not getattr(cfg.mqtt, key):
                raise ConfigError(path, f"mqtt.{key}", "expected a file path when mqtt.tls is true")
    for key in ("signing_public_key", "sealing_public_key"):
        value = getattr(cfg.hq, key)
        if value:
            from edge.keys import decode_public_key

            try:
                decode_public_key(value)
            except ValueError as exc:
                raise ConfigError(path, f"hq.{key}", str(exc)) from None
    _check_listen(path, cfg.api.listen, cfg.api.allow_remote)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or "localhost"; any other name or address may be reachable."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_listen(path: str, listen: str, allow_remote: bool = False) -> None:
    if listen.startswith("unix:"):
        if len(listen) <= len("unix:"):
            raise ConfigError(path, "api.listen", "expected unix:/path/to/socket")
        return
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(path, "api.listen", f"expected HOST:PORT or unix:/path, got {listen!r}")
    if not allow_remote and not is_loopback(host):
        raise ConfigError(
            path,
            "api.listen",
            f"{host} is not a loopback address: anyone who reaches it could verify without"
            " a token; use 127.0.0.1 or unix:/path, or set api.allow_remote = true",
        )


def missing_files(cfg: Config) -> list[tuple[str, str]]:
    """(key, problem) for every file the config names that cannot be read now.

    Not part of parsing: a config may be checked before its TLS files are installed
    (`edge config check --no-files`); `edge run` and `edge config check` look.
    """
    found: list[tuple[str, str]] = []
    m = cfg.mqtt
    if m.enabled and m.tls:
        for key in ("ca_file", "cert_file", "key_file"):
            name = getattr(m, key)
            if not name:
                continue
            problem = _file_problem(Path(name))
            if problem:
                found.append((f"mqtt.{key}", f"{name}: {problem}"))
    return found


def _file_problem(path: Path) -> str | None:
    try:
        if not path.is_file():
            return "no such file" if not path.exists() else "not a regular file"
        with path.open("rb"):
            pass
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_files(cfg: Config) -> None:
    """Raise ConfigError (exit 2) naming the first key whose file is missing or unreadable."""
    for key, problem in missing_files(cfg):
        raise ConfigError(cfg.source, key, problem)


def parse_config(data: dict[str, Any], source: str = "<string>") -> Config:
    """Validate an already parsed TOML document into a Config."""
    cfg = build_settings(Config, data, source)
    cfg = _embedder_thresholds(cfg, data.get("face"))
    _cross_checks(cfg)
    return cfg


def _embedder_thresholds(cfg: Config, raw_face: Any) -> Config:
    """A file that picks `face.embedder` gets that embedder's calibrated thresholds for the
    keys it does not set itself (SFace's defaults would be wrong for another embedder)."""
    if not isinstance(raw_face, dict) or "embedder" not in raw_face:
        return cfg
    given = EMBEDDER_THRESHOLDS[cfg.face.embedder]
    changes: dict[str, Any] = {
        k: v for k, v in zip(_THRESHOLD_KEYS, given, strict=True) if k not in raw_face
    }
    if not changes:
        return cfg
    return dataclasses.replace(cfg, face=dataclasses.replace(cfg.face, **changes))


def with_embedder(face: FaceConfig, embedder: str) -> FaceConfig:
    """`face` switched to another embedder, with that embedder's calibrated thresholds."""
    if embedder not in EMBEDDER_THRESHOLDS:
        raise ConfigError(
            "<command line>", "face.embedder", f"expected one of {', '.join(EMBEDDERS)}"
        )
    t1, t2, t3 = EMBEDDER_THRESHOLDS[embedder]
    return dataclasses.replace(
        face,
        embedder=embedder,
        threshold=t1,
        threshold_2_templates=t2,
        threshold_3_templates=t3,
    )


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the config; `path` None means $BANSOS_EDGE_CONFIG or the default."""
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        path = Path(env) if env else DEFAULT_CONFIG_PATH
    path = Path(path)
    data = read_toml(path, "pass --config PATH")
    return parse_config(data, str(path))


def replace_section(cfg: Config, **sections: Any) -> Config:
    """A copy of `cfg` with whole sections replaced (used by the demo and tests)."""
    return dataclasses.replace(cfg, **sections)


def config_to_toml(cfg: Config) -> str:
    """Render a Config as TOML (every key), used to write the demo's config."""
    lines: list[str] = []
    for f in dataclasses.fields(cfg):
        if f.name == "source":
            continue
        section = getattr(cfg, f.name)
        lines.append(f"[{f.name}]")
        for sf in dataclasses.fields(section):
            lines.append(f"{sf.name} = {_toml_value(getattr(section, sf.name))}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string
