"""Config mistakes that used to pass `edge config check` (issue 19): a listen address on
every interface, TLS files that do not exist, an API port already taken."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edge.keys import init_device_key
from tests.conftest import WriteConfig, run_edge


@pytest.mark.parametrize("listen", ["0.0.0.0:8470", "[::]:8470", "192.168.1.20:8470"])
def test_non_loopback_listen_is_refused_unless_allowed(
    write_config: WriteConfig, listen: str
) -> None:
    cfg = write_config(api={"listen": listen})
    res = run_edge("config", "check", "--config", str(cfg))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "api.listen" in res.stderr and "allow_remote" in res.stderr
    assert "Traceback" not in res.stderr
    allowed = write_config("allowed.toml", api={"listen": listen, "allow_remote": True})
    res = run_edge("config", "check", "--config", str(allowed))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("listen", ["127.0.0.1:8470", "127.0.0.2:8470", "[::1]:8470"])
def test_loopback_listen_passes(write_config: WriteConfig, listen: str) -> None:
    res = run_edge("config", "check", "--config", str(write_config(api={"listen": listen})))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("missing", ["ca_file", "cert_file", "key_file"])
def test_missing_tls_file_is_named_by_check_and_run(
    write_config: WriteConfig, tmp_path: Path, missing: str
) -> None:
    files = {}
    for key in ("ca_file", "cert_file", "key_file"):
        path = tmp_path / f"{key}.pem"
        if key != missing:
            path.write_text("-----BEGIN X-----\n")
        files[key] = str(path)
    cfg = write_config(mqtt={"enabled": True, "tls": True, **files})
    init_device_key(tmp_path / "state" / "device.key")
    for args in (("config", "check"), ("run",)):
        res = run_edge(*args, "--config", str(cfg), timeout=60)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert f"mqtt.{missing}" in res.stderr and files[missing] in res.stderr, res.stderr
        assert "no such file" in res.stderr and "Traceback" not in res.stderr
    # checking a config before its TLS files are installed (Ansible's validate step)
    res = run_edge("config", "check", "--no-files", "--config", str(cfg))
    assert res.returncode == 0, res.stderr


def test_api_port_in_use_names_api_listen(write_config: WriteConfig, tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        cfg = write_config(api={"listen": f"127.0.0.1:{port}"})
        init_device_key(tmp_path / "state" / "device.key")
        res = run_edge("run", "--config", str(cfg), timeout=120)
    finally:
        holder.close()
    assert res.returncode == 3, res.stderr
    assert f"api.listen 127.0.0.1:{port}" in res.stderr, res.stderr
    assert "in use" in res.stderr and "Traceback" not in res.stderr
