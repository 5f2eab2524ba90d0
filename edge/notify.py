"""systemd notifications (READY, STATUS, WATCHDOG, STOPPING, RELOADING).

Uses systemd-python (the design card's package) when it is installed and speaks
the datagram protocol directly otherwise, so the daemon runs the same off a Pi.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from typing import Any

log = logging.getLogger(__name__)


def _systemd_daemon() -> Any | None:
    try:
        return importlib.import_module("systemd.daemon")
    except ImportError:
        return None


class Notifier:
    """Send sd_notify messages when $NOTIFY_SOCKET is set; a no-op otherwise."""

    def __init__(self) -> None:
        self.socket_path = os.environ.get("NOTIFY_SOCKET", "")
        self._sd = _systemd_daemon()

    @property
    def enabled(self) -> bool:
        return bool(self.socket_path)

    def send(self, message: str) -> bool:
        if not self.socket_path:
            return False
        if self._sd is not None:
            try:
                return bool(self._sd.notify(message))
            except OSError as exc:
                log.warning("sd_notify failed: %s", exc)
                return False
        address = self.socket_path
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.sendall(message.encode("utf-8"))
            return True
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
            return False

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        self.send("RELOADING=1")

    def stopping(self, status: str = "stopping") -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec (from $WATCHDOG_USEC), or None when there is no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None
