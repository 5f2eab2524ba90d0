"""HQ's own typed, frozen TOML config (broker, database, keys, ingest tuning).

Validated once at start with the kiosk config's rules (file, key, what is expected),
so a misconfigured HQ worker stops with one clear line instead of failing mid-run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.typed_toml import ConfigError, build_settings, read_toml, rng

DEFAULT_HQ_CONFIG_PATH = Path("/etc/bansos-edge/hq.toml")
HQ_CONFIG_ENV = "BANSOS_HQ_CONFIG"


@dataclass(frozen=True)
class BrokerConfig:
    """The MQTT broker HQ ingest connects to, with its client certificate (CN hq.ingest).

    The broker makes the certificate CN the client id, so each ingest worker needs its own
    CN (hq.ingest, hq.ingest-2, ...) and the roster publisher its own (`roster_*_file`,
    e.g. CN hq.roster); otherwise one would take over the other's session.
    """

    host: str = "127.0.0.1"
    port: int = field(default=8883, metadata=rng(1, 65535))
    tls: bool = True
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    client_id: str = "hq.ingest"
    roster_cert_file: str = ""
    roster_key_file: str = ""
    share_group: str = "hq"
    topic_prefix: str = "kiosk"
    keepalive_s: int = field(default=30, metadata=rng(5, 3600))
    session_expiry_s: int = field(default=86400, metadata=rng(0, 4_294_967_295))
    connect_timeout_s: float = field(default=10.0, metadata=rng(0.5, 600.0))


@dataclass(frozen=True)
class DatabaseConfig:
    """Where HQ stores records: a SQLite path (default) or a postgresql:// URL."""

    url: str = "/var/lib/bansos-hq/hq.db"
    busy_timeout_ms: int = field(default=30_000, metadata=rng(0, 600_000))


@dataclass(frozen=True)
class KeysConfig:
    """HQ's private keys: Ed25519 signs rosters, X25519 opens sealed evidence."""

    dir: str = "/var/lib/bansos-hq/keys"


@dataclass(frozen=True)
class IngestConfig:
    """Batching: records commit together, then PUBACKs and HQ acks go out."""

    batch_max: int = field(default=200, metadata=rng(1, 10_000))
    batch_wait_s: float = field(default=0.05, metadata=rng(0.0, 10.0))
    max_payload_bytes: int = field(default=1_048_576, metadata=rng(1024, 268_435_456))


@dataclass(frozen=True)
class SuspectsConfig:
    """The 1:N search for one face behind several KPMs (docs/suspects.md).

    Two passes per period. In-region: every pair inside a block of the KPMs' own district
    or sub-district (`kpm_regions`, from the KPM list), exact, at `region_threshold`; proxy
    collection is local, and small blocks keep false leads few. National: every face
    against every other through a FAISS index, range search at `national_threshold`,
    stricter because the pairs are n^2/2. Thresholds come from `python -m bench.hq_calibrate`
    for the shipped embedder: recompute them when the model changes.
    """

    region_level: str = field(
        default="district", metadata={"choices": ("district", "subdistrict", "none")}
    )
    region_threshold: float = field(default=0.698, metadata=rng(-1.0, 1.0))
    max_block: int = field(default=200_000, metadata=rng(2, 100_000_000))
    national: bool = True
    national_threshold: float = field(default=0.8493, metadata=rng(-1.0, 1.0))
    index: str = field(default="ivf", metadata={"choices": ("ivf", "hnsw", "flat")})
    ivf_nlist: int = field(default=0, metadata=rng(0, 1_000_000))  # 0: 4*sqrt(n)
    ivf_nprobe: int = field(default=64, metadata=rng(1, 1_000_000))  # bench.hq_nprobe
    hnsw_m: int = field(default=32, metadata=rng(4, 256))
    hnsw_ef_search: int = field(default=128, metadata=rng(8, 100_000))
    chunk: int = field(default=50_000, metadata=rng(100, 10_000_000))
    index_dir: str = ""  # "": beside a SQLite database (<db>.suspects/); see search.py
    threads: int = field(default=0, metadata=rng(0, 256))  # 0: FAISS's default


@dataclass(frozen=True)
class HqSettings:
    """The whole HQ configuration; `source` names the file it came from."""

    broker: BrokerConfig = field(default_factory=BrokerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    suspects: SuspectsConfig = field(default_factory=SuspectsConfig)
    source: str = "<defaults>"


_TOPIC_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _cross_checks(cfg: HqSettings) -> None:
    path = cfg.source
    b = cfg.broker
    if b.tls:
        for key in ("ca_file", "cert_file", "key_file"):
            if not getattr(b, key):
                raise ConfigError(path, f"broker.{key}", "expected a file path when broker.tls")
    if bool(b.roster_cert_file) != bool(b.roster_key_file):
        raise ConfigError(
            path, "broker.roster_key_file", "expected roster_cert_file and roster_key_file together"
        )
    for key in ("share_group", "topic_prefix", "client_id"):
        value = getattr(b, key)
        if not value or not set(value) <= _TOPIC_SAFE:
            raise ConfigError(
                path, f"broker.{key}", f"expected letters, digits, . _ -; got {value!r}"
            )
    url = cfg.database.url
    if not url:
        raise ConfigError(path, "database.url", "expected a SQLite path or postgresql://...")
    if "://" in url and not url.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise ConfigError(
            path,
            "database.url",
            f"expected a SQLite path, sqlite:///PATH or postgresql://, got {url!r}",
        )
    if not cfg.keys.dir:
        raise ConfigError(path, "keys.dir", "expected a directory path")
    sus = cfg.suspects
    if sus.region_level == "none" and not sus.national:
        raise ConfigError(
            path, "suspects.national", "expected true when region_level is none (no search)"
        )


def parse_hq_config(data: dict[str, Any], source: str = "<string>") -> HqSettings:
    """Validate an already parsed TOML document into HqSettings."""
    cfg = build_settings(HqSettings, data, source)
    _cross_checks(cfg)
    return cfg


def load_hq_config(path: str | Path | None = None) -> HqSettings:
    """Read and validate; `path` None means $BANSOS_HQ_CONFIG or /etc/bansos-edge/hq.toml."""
    if path is None:
        env = os.environ.get(HQ_CONFIG_ENV)
        path = Path(env) if env else DEFAULT_HQ_CONFIG_PATH
    path = Path(path)
    data = read_toml(path, "pass --hq-config PATH")
    return parse_hq_config(data, str(path))
