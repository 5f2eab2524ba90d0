"""HQ test helpers: a real PostgreSQL server in a temp dir, simulated kiosks, HQ configs."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nacl.public import PrivateKey, PublicKey
from nacl.signing import SigningKey

from edge.keys import b64, device_id_for
from edge.records import (
    GENESIS_HASH,
    Evidence,
    Verification,
    build_record,
    record_hash,
    seal_evidence,
)
from tests.support.helpers import free_port

MODEL = "ab" * 32


def _pg_bin(name: str) -> str:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


class PgServer:
    """initdb + pg_ctl start on a free loopback port; runs as `postgres` when we are root."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hq-pg-"))
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = list(args)
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)

    def start(self) -> PgServer:
        data = self.dir / "data"
        self._run(
            _pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self.dir / "log"),
            "-o",
            opts,
            "-w",
            "-t",
            "120",
            "start",
        )
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(
                _pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop"
            )
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def pg_server() -> Iterator[PgServer]:
    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


def unit_vector(rng: np.random.Generator, dim: int = 128) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


@dataclass
class SimKiosk:
    """A kiosk's signing key and chain head; makes real signed, chained records."""

    hq_box: PublicKey
    key: SigningKey = field(default_factory=SigningKey.generate)
    seq: int = 0
    prev_hash: str = GENESIS_HASH
    clock: float = 1_795_000_000.0

    @property
    def device_id(self) -> str:
        return device_id_for(self.key.verify_key)

    @property
    def public_key(self) -> str:
        return b64(bytes(self.key.verify_key))

    def record(
        self,
        kpm_id: str = "KPM-1",
        decision: str = "match",
        period: str = "2026-11",
        programme: str = "sembako",
        embedding: np.ndarray | None = None,
        geofence: str = "inside",
        advance: bool = True,
        seq: int | None = None,
        prev_hash: str | None = None,
        record_id: str | None = None,
        model: str = MODEL,
        score: float | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """The next record in this kiosk's chain (or one at a chosen seq/prev for forks)."""
        self.clock += 1.0
        evidence = None
        if embedding is not None:
            evidence = seal_evidence(
                Evidence(b"\xff\xd8fake-jpeg\xff\xd9", np.asarray(embedding, "<f4").tobytes()),
                self.hq_box,
            )
        v = Verification(
            kpm_id=kpm_id, programme=programme, period=period, officer_id="OFF-1",
            decision=decision, threshold=0.362,
            score=score if score is not None else (0.8 if decision == "match" else 0.1),
            model=model, captured_at=self.clock, clock="gps",
            geo={"lat": -7.1, "lon": 110.4, "eph_m": 5.0, "mode": 3, "fix_age_s": 0.5},
            geofence=geofence, frames_used=3, evidence=evidence, reason=reason,
        )  # fmt: skip
        s = self.seq + 1 if seq is None else seq
        p = self.prev_hash if prev_hash is None else prev_hash
        rec = build_record(
            v, device_id=self.device_id, seq=s, prev_hash=p, key=self.key, record_id=record_id
        )
        if advance:
            self.seq, self.prev_hash = s, record_hash(rec)
        return rec


def hq_box_key() -> PrivateKey:
    return PrivateKey.generate()


# HQ's Ed25519 signing key in tests: signs acks (and rosters where a test wants it); the
# simulated HQs and the ingest workers use it, kiosks under test verify with its public half.
HQ_SIGNING_KEY = SigningKey(bytes(range(32)))
HQ_VERIFY_KEY = HQ_SIGNING_KEY.verify_key
_KEY_DIR: list[Path] = []


def hq_key_dir() -> Path:
    """A directory holding HQ_SIGNING_KEY as `hq-signing.key` ([keys] dir of a test HQ)."""
    if not _KEY_DIR:
        from edge_hq.keys import SIGNING_FILE

        d = Path(tempfile.mkdtemp(prefix="hq-keys-"))
        (d / SIGNING_FILE).write_text(b64(bytes(HQ_SIGNING_KEY)) + "\n")
        (d / SIGNING_FILE).chmod(0o600)
        _KEY_DIR.append(d)
    return _KEY_DIR[0]


# -- pytest fixtures (registered by pytest_plugins in tests/conftest.py) ---------------


_PG: list[PgServer] = []


def shared_pg() -> PgServer:
    """One server per test process, however many modules import the fixture (stopped at exit)."""
    if not _PG:
        import atexit

        server = PgServer().start()
        atexit.register(server.stop)
        _PG.append(server)
    return _PG[0]


@pytest.fixture(scope="session")
def pg() -> PgServer:
    """A real PostgreSQL server (started once); each test takes a fresh database."""
    return shared_pg()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "hq.db")
    server: PgServer = request.getfixturevalue("pg")
    return server.new_database()
