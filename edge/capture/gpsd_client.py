"""A small client of gpsd's JSON protocol: one socket per instance, explicit timeouts.

Why not gpsd-py3: it keeps its socket in module globals (one connection per process,
no clean reconnect), polls with `?POLL;` and raises until gpsd has data, and has no
read timeouts, so a silent gpsd would hang the reader thread. This client connects,
sends `?WATCH={"enable":true,"json":true}` and yields each JSON report as a dict.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from typing import Any

from edge.errors import DeviceMissing

log = logging.getLogger(__name__)

WATCH = b'?WATCH={"enable":true,"json":true}\n'
MAX_LINE = 256 * 1024  # gpsd's longest reports (SKY with many satellites) are a few KiB


class GpsdUnavailable(DeviceMissing):
    """gpsd cannot be reached, or stopped talking (exit 3 on the command line)."""


class GpsdClient:
    """One connection to gpsd in watcher mode; not thread-safe (one reader thread owns it)."""

    def __init__(self, host: str, port: int, connect_timeout_s: float = 3.0) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self._sock: socket.socket | None = None
        self._buf = b""
        self.version: dict[str, Any] | None = None

    @property
    def where(self) -> str:
        return f"gpsd at {self.host}:{self.port}"

    def connect(self) -> None:
        """Open the socket and start watching; raises GpsdUnavailable with where and why."""
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except OSError as exc:
            raise GpsdUnavailable(f"{self.where}: cannot connect ({exc.strerror or exc})") from None
        self._sock = sock
        self._buf = b""
        try:
            sock.sendall(WATCH)
        except OSError as exc:
            self.close()
            raise GpsdUnavailable(f"{self.where}: connection lost ({exc})") from None

    def ping(self) -> None:
        """Ask gpsd for its VERSION: a live gpsd answers even with no receiver attached."""
        if self._sock is None:
            raise GpsdUnavailable(f"{self.where}: not connected")
        try:
            self._sock.sendall(b"?VERSION;\n")
        except OSError as exc:
            self.close()
            raise GpsdUnavailable(f"{self.where}: connection lost ({exc})") from None

    def read(self, timeout_s: float) -> dict[str, Any] | None:
        """The next JSON report, or None when nothing arrived within timeout_s.

        Raises GpsdUnavailable when gpsd closes the connection. Lines that are not
        JSON objects are skipped (logged at debug): gpsd never sends them, a
        wrong service on the port might.
        """
        if self._sock is None:
            raise GpsdUnavailable(f"{self.where}: not connected")
        deadline = time.monotonic() + timeout_s
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                msg = parse_report(line)
                if msg is None:
                    continue
                if msg.get("class") == "VERSION":
                    self.version = msg
                return msg
            if len(self._buf) > MAX_LINE:
                log.warning("%s: dropping an over-long line (%d bytes)", self.where, len(self._buf))
                self._buf = b""
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            except OSError as exc:
                self.close()
                raise GpsdUnavailable(f"{self.where}: connection lost ({exc})") from None
            if not chunk:
                self.close()
                raise GpsdUnavailable(f"{self.where}: gpsd closed the connection")
            self._buf += chunk

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


def parse_report(line: bytes) -> dict[str, Any] | None:
    """One gpsd JSON line as a dict with a string "class", or None if it is not one."""
    line = line.strip()
    if not line.startswith(b"{"):
        return None
    try:
        msg = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        log.debug("gpsd sent a line that is not JSON")
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("class"), str):
        return None
    return msg
