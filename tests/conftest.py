"""Shared test helpers: run the real `edge` command, write configs; register the fixtures.

Helpers used across modules live in tests/support/ (see its __init__); their fixtures are
registered here once, so a test only names them as parameters.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.keys import b64
from tests.support.helpers import REPO, write_toml

pytest_plugins = [
    "tests.support.mqtt",  # pki, broker
    "tests.support.hq",  # pg, db_url
    "tests.support.seeds",  # seed (printed, fixed by BANSOS_TEST_SEED)
]

WriteConfig = Callable[..., Path]


def run_edge(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m edge ARGS` as a real subprocess (so exit codes and stderr are real)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=input,
        cwd=REPO,
    )


class HqKeys:
    """HQ's two key pairs as a test makes them."""

    def __init__(self) -> None:
        self.signing = SigningKey.generate()
        self.box = PrivateKey.generate()

    @property
    def signing_public(self) -> str:
        return b64(bytes(self.signing.verify_key))

    @property
    def sealing_public(self) -> str:
        return b64(bytes(self.box.public_key))


@pytest.fixture
def hq_keys() -> HqKeys:
    return HqKeys()


@pytest.fixture
def write_config(tmp_path: Path, hq_keys: HqKeys) -> WriteConfig:
    """Write an edge.toml under tmp_path: state in tmp_path/state, MQTT off unless overridden.

    Call as write_config(section={"key": value}, ...); returns the file's path.
    """

    def write(name: str = "edge.toml", **sections: dict[str, Any]) -> Path:
        base: dict[str, dict[str, Any]] = {
            "device": {"state_dir": str(tmp_path / "state")},
            "hq": {
                "signing_public_key": hq_keys.signing_public,
                "sealing_public_key": hq_keys.sealing_public,
            },
            "mqtt": {"enabled": False},
            "gps": {"enabled": False},
            # the default is picamera2: a test kiosk names its replay camera (the sample faces)
            "camera": {"backend": "replay"},
        }
        for section, values in sections.items():
            base.setdefault(section, {}).update(values)
        return write_toml(tmp_path / name, base)

    return write
