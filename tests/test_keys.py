"""Device keys through the real CLI: 0600, no silent overwrite, show matches the file."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edge.errors import BadInput, DeviceMissing
from edge.keys import (
    decode_public_key,
    device_id_for,
    key_file_problem,
    load_signing_key,
)
from tests.conftest import WriteConfig, run_edge


def test_keys_init_show_force(write_config: WriteConfig, tmp_path: Path) -> None:
    cfg = write_config()
    key_path = tmp_path / "state" / "device.key"
    os.umask(0o022)  # a permissive umask must not leak into the key's mode
    res = run_edge("keys", "init", "--config", str(cfg), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_file_problem(key_path) is None
    key = load_signing_key(key_path)
    pub = bytes(key.verify_key)
    assert info["public_key"] == base64.b64encode(pub).decode()
    assert info["device_id"] == "kiosk-" + hashlib.sha256(pub).hexdigest()[:16]
    # the private key is not printed
    assert base64.b64encode(bytes(key)).decode() not in res.stdout + res.stderr

    before = key_path.read_bytes()
    res = run_edge("keys", "init", "--config", str(cfg))
    assert res.returncode == 2
    assert "refusing to overwrite" in res.stderr and str(key_path) in res.stderr
    assert key_path.read_bytes() == before

    res = run_edge("keys", "show", "--config", str(cfg), "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == {
        "device_id": info["device_id"],
        "public_key": info["public_key"],
    }
    res = run_edge("keys", "show", "--config", str(cfg))
    assert info["device_id"] in res.stdout and info["public_key"] in res.stdout

    res = run_edge("keys", "init", "--config", str(cfg), "--force", "--json")
    assert res.returncode == 0
    assert json.loads(res.stdout)["device_id"] != info["device_id"]
    assert key_path.read_bytes() != before
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_force_tightens_a_loose_existing_file(write_config: WriteConfig, tmp_path: Path) -> None:
    cfg = write_config()
    key_path = tmp_path / "state" / "device.key"
    key_path.parent.mkdir(parents=True)
    key_path.write_text("old")
    key_path.chmod(0o644)
    assert key_file_problem(key_path) == f"{key_path}: mode 644, expected 600"
    res = run_edge("keys", "init", "--config", str(cfg), "--force")
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_keys_show_without_key_is_device_missing(write_config: WriteConfig) -> None:
    res = run_edge("keys", "show", "--config", str(write_config()))
    assert res.returncode == 3 and "keys init" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not base64 at all!", "not valid base64"),
        (base64.b64encode(b"short"), "32-byte"),
        (b"\xff\xfe\x00", "not a key file"),
    ],
)
def test_bad_key_file_exit_2(
    write_config: WriteConfig, tmp_path: Path, content: bytes, words: str
) -> None:
    cfg = write_config()
    key_path = tmp_path / "state" / "device.key"
    key_path.parent.mkdir(parents=True)
    key_path.write_bytes(content)
    key_path.chmod(0o600)
    res = run_edge("keys", "show", "--config", str(cfg))
    assert res.returncode == 2 and words in res.stderr and str(key_path) in res.stderr
    assert "Traceback" not in res.stderr


def test_library_errors(tmp_path: Path) -> None:
    with pytest.raises(DeviceMissing):
        load_signing_key(tmp_path / "absent.key")
    (tmp_path / "dir.key").mkdir()
    with pytest.raises(BadInput):
        load_signing_key(tmp_path / "dir.key")
    with pytest.raises(ValueError, match="base64"):
        decode_public_key("***")
    with pytest.raises(ValueError, match="32-byte"):
        decode_public_key(base64.b64encode(b"x" * 31).decode())
    k = SigningKey.generate()
    assert decode_public_key(base64.b64encode(bytes(k.verify_key)).decode()) == bytes(k.verify_key)
    assert device_id_for(k.verify_key).startswith("kiosk-")
