"""sd_notify datagrams reach a socket bound by the test, with and without systemd-python."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edge import notify
from edge.notify import Notifier, watchdog_interval_s


def _bound(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock, path


@pytest.mark.parametrize("use_systemd_python", [True, False])
def test_messages_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_systemd_python: bool
) -> None:
    sock, path = _bound(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    if not use_systemd_python:
        monkeypatch.setattr(notify, "_systemd_daemon", lambda: None)
    n = Notifier()
    assert (n._sd is not None) == use_systemd_python
    n.ready("ready; queue 0")
    assert sock.recv(4096).decode() == "READY=1\nSTATUS=ready; queue 0"
    n.watchdog()
    assert sock.recv(4096).decode() == "WATCHDOG=1"
    n.stopping("bye")
    assert sock.recv(4096).decode() == "STOPPING=1\nSTATUS=bye"
    sock.close()


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"bansos-edge-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.setattr(notify, "_systemd_daemon", lambda: None)
    Notifier().status("hello")
    assert sock.recv(4096) == b"STATUS=hello"
    sock.close()


def test_no_socket_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert Notifier().send("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    monkeypatch.setattr(notify, "_systemd_daemon", lambda: None)
    assert Notifier().send("READY=1") is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "junk")
    assert watchdog_interval_s() is None
