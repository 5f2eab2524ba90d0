"""The real daemon under a notify socket: a full disk and a silent API (issue 19).

A full disk used to give a bare 500 while /v1/health said ok; the watchdog kept pinging
while 70 idle connections kept /v1/status from answering.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.api import ApiServer, request_json
from edge.config import load_config
from edge.daemon import Daemon
from edge.health import ApiProbe
from edge.keys import init_device_key
from edge.notify import Notifier
from tests.conftest import WriteConfig
from tests.support.daemon import spawn_daemon, stop_daemon
from tests.support.helpers import free_port
from tests.test_daemon_e2e import NotifyListener


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "6m") -> Iterator[Path]:
    """A real tmpfs of a few MB (needs root); skips the test where mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(path: Path) -> Path:
    """Write until the filesystem has no byte left (bounded loops, unbuffered)."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                for _ in range(10_000):  # bounded: 640 MB at most
                    f.write(b"\0" * size)
    return filler


@contextlib.contextmanager
def running_daemon(cfg: Path, tmp_path: Path, watchdog_s: float = 2.0) -> Iterator[Any]:
    notify = NotifyListener(tmp_path / "notify.sock")
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        proc = spawn_daemon(cfg, notify.path, log, int(watchdog_s * 1e6))
        try:
            deadline = time.monotonic() + 120
            while not notify.seen("READY=1"):
                assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "not READY in 120 s"
                time.sleep(0.1)
            yield proc, notify, log_path
        finally:
            stop_daemon(proc, 30)
            notify.close()


def _verify(listen: str, kpm: str = "KPM-0001") -> tuple[int, dict[str, Any]]:
    return request_json(
        listen, "POST", "/v1/verify", {"kpm_id": kpm, "officer_id": "officer-7"}, timeout=30
    )


def test_full_disk_is_a_clear_507_and_health_says_so(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """A real 6 MB tmpfs holds the state; a filler file takes the rest of it."""
    with small_filesystem(tmp_path / "small") as small:
        state = small / "state"
        init_device_key(state / "device.key")
        listen = f"127.0.0.1:{free_port()}"
        cfg = write_config(device={"state_dir": str(state)}, api={"listen": listen})
        with running_daemon(cfg, tmp_path) as (proc, notify, log_path):
            code, body = _verify(listen)  # no roster here: a not_eligible record, stored
            assert code == 200 and body["decision"] == "not_eligible", body
            assert request_json(listen, "GET", "/v1/health")[0] == 200
            filler = _fill(small)
            answers = []
            for i in range(200):  # the WAL may hold a few more records before SQLite gives up
                code, body = _verify(listen, f"KPM-{i:04d}")
                answers.append(code)
                if code != 200:
                    break
            assert code == 507, (answers, body)
            assert body["error"].startswith("disk full: nothing stored"), body
            assert body["decision"] is None
            full = body
            code, health = request_json(listen, "GET", "/v1/health")
            assert code == 503 and any("disk full" in p for p in health["problems"]), health
            # a restart frees no space: the watchdog keeps pinging, the daemon keeps answering
            since = time.monotonic()
            time.sleep(2.5)
            assert notify.seen("WATCHDOG=1", since), notify.messages[-5:]
            assert proc.poll() is None
            assert request_json(listen, "GET", "/v1/status")[0] == 200
            filler.unlink()
            code, body = _verify(listen, "KPM-9999")
            assert code == 200, body
            assert request_json(listen, "GET", "/v1/health") == (200, {"ok": True, "problems": []})
        log = log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
        print(f"\nfull disk after {len(answers) - 1} more records: 507 {full!r}")


# -- the watchdog follows the API ------------------------------------------------------
class _Silent:
    """A listening socket that never answers (as a starved API looked to a client)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"


@pytest.mark.slow
def test_watchdog_stops_when_the_api_cannot_answer(
    write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's watchdog loop, real notify socket, real API sockets."""
    cfg = load_config(write_config())
    init_device_key(Path(cfg.device.state_dir) / "device.key")
    notify = NotifyListener(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # ping every 0.5 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = Daemon(cfg, Notifier())
    silent = _Silent()
    api = ApiServer("127.0.0.1:0", daemon)
    api.start()
    thread = threading.Thread(target=daemon._watchdog, daemon=True)
    try:
        daemon.api_probe = ApiProbe(api.address)
        thread.start()
        time.sleep(1.5)
        assert notify.seen("WATCHDOG=1"), "pings while the API answers"
        daemon.api_probe = ApiProbe(silent.address)  # now the API does not answer
        time.sleep(0.8)  # let a round in progress finish
        since = time.monotonic()
        time.sleep(2.0)
        assert not notify.seen("WATCHDOG=1", since), "no pings while the API is silent"
        status = [m for m in notify.seen("STATUS=") if "api not answering" in m]
        assert status and silent.address in status[-1], notify.messages[-5:]
        code, body = request_json(api.address, "GET", "/v1/health")
        assert code == 503 and "api not answering" in body["problems"][0]
        daemon.api_probe = ApiProbe(api.address)
        since = time.monotonic()
        time.sleep(1.5)
        assert notify.seen("WATCHDOG=1", since), "pings again once it answers"
    finally:
        daemon.signals.stop.set()
        thread.join(5)
        api.stop()
        silent.sock.close()
        notify.close()
        daemon.store.close()


@pytest.mark.slow
def test_real_daemon_answers_and_pings_through_1000_idle_connections(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """1,000 idle connections to the real daemon: status answers, the watchdog pings on,
    and the daemon's thread count stays far below the unit's TasksMax=64."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"open-file hard limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    init_device_key(tmp_path / "state" / "device.key")
    listen = f"127.0.0.1:{free_port()}"
    cfg = write_config(api={"listen": listen})
    idle: list[socket.socket] = []
    try:
        with running_daemon(cfg, tmp_path) as (proc, notify, _log):
            host, _, port = listen.rpartition(":")
            for _ in range(1000):
                idle.append(socket.create_connection((host, int(port)), timeout=10))
            since = time.monotonic()
            slowest = 0.0
            for _ in range(20):
                t0 = time.monotonic()
                assert request_json(listen, "GET", "/v1/status", timeout=3)[0] == 200
                slowest = max(slowest, time.monotonic() - t0)
                time.sleep(0.1)
            time.sleep(1.5)
            assert notify.seen("WATCHDOG=1", since)
            threads = len(os.listdir(f"/proc/{proc.pid}/task"))
            print(f"\nreal daemon, 1000 idle: {threads} threads, slowest status {slowest:.3f}s")
            assert threads < 40 and slowest < 2.0
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
