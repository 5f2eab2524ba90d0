"""The real `edge run` as a subprocess under a notify socket the test binds, and load helpers.

`spawn_daemon` starts it (stdout and stderr to a log file), `stop_daemon` ends it
(SIGTERM, then SIGKILL after a grace period); `burst_posts` is many clients POSTing at
once over loopback, counting how each was answered (shared with bench/api.py).
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from tests.support.helpers import REPO


def spawn_daemon(
    cfg: Path, notify_path: Path, log: IO[bytes], watchdog_usec: int | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "PYTHONUNBUFFERED": "1"}
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
        env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, "-m", "edge", "-v", "run", "--config", str(cfg)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def stop_daemon(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def burst_posts(address: tuple[str, int], n: int, timeout_s: float = 60.0) -> dict[str, int]:
    """n clients connect and POST /v1/verify at once (non-blocking); count the outcomes:
    the answer's status line, an exception name (a reset), or no answer in time."""
    body = b'{"kpm_id": "KPM-0001", "officer_id": "o1"}'
    request = (
        b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    sel = selectors.DefaultSelector()
    got: dict[socket.socket, bytearray] = {}
    for _ in range(n):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(address)
        got[c] = bytearray()
        sel.register(c, selectors.EVENT_WRITE)
    counts: dict[str, int] = {}
    sent: set[socket.socket] = set()
    deadline = time.monotonic() + timeout_s
    while got and time.monotonic() < deadline:
        for key, events in sel.select(timeout=1.0):
            s: Any = key.fileobj
            try:
                if s not in sent and events & selectors.EVENT_WRITE:
                    s.sendall(request)
                    sent.add(s)
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                what = type(exc).__name__
            else:
                if chunk:
                    got[s] += chunk
                    continue
                what = bytes(got[s]).split(b"\r\n", 1)[0].decode("latin-1") or "closed, no answer"
            counts[what] = counts.get(what, 0) + 1
            sel.unregister(s)
            s.close()
            del got[s]
    for s in got:
        counts["no answer in time"] = counts.get("no answer in time", 0) + 1
        s.close()
    sel.close()
    return counts
