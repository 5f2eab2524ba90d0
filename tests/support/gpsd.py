"""A real gpsd fed from a log by `gpsfake`, on a free loopback port, for tests.

    with gpsfake_server(GPS_LOGS / "ublox-neo-m8n.log") as gps:
        ... connect to gps.host, gps.port ...

gpsfake runs gpsd with `-n` (read the device without waiting for a client) so the
feed starts on its own. The whole process group is ended on exit. `restart()` ends
gpsd and starts it again on the same port (for reconnect tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.support.helpers import free_port

GPSFAKE = shutil.which("gpsfake")
START_TIMEOUT_S = 30.0


def port_answers(host: str, port: int) -> bool:
    """gpsd is listening: it greets every new client with a VERSION report."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            s.settimeout(2.0)
            return b'"class":"VERSION"' in s.recv(4096)
    except OSError:
        return False


class GpsFake:
    """One gpsfake process group (gpsfake + its gpsd)."""

    def __init__(
        self,
        log: Path,
        port: int | None = None,
        once: bool = False,
        cycle: float | None = None,
        slow: bool = False,
    ) -> None:
        if GPSFAKE is None:
            pytest.fail("gpsfake not installed (Debian package gpsd-clients; run make setup)")
        self.log = Path(log)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.once = once
        self.cycle = cycle
        self.slow = slow
        self.proc: subprocess.Popen[bytes] | None = None
        self._out_fd, self._out_path = tempfile.mkstemp(prefix="gpsfake-", suffix=".log")

    def argv(self) -> list[str]:
        args = [str(GPSFAKE), "-n", "-q", "-P", str(self.port)]
        if self.once:
            args.append("-1")
        if self.cycle is not None:
            args += ["-c", str(self.cycle)]
        if self.slow:
            args.append("-S")
        return [*args, str(self.log)]

    def start(self, wait: bool = True) -> GpsFake:
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._out_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we end gpsfake and gpsd together
        )
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gpsfake exited early: {self.output()}")
            if port_answers(self.host, self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"gpsd on port {self.port} did not come up: {self.output()}")

    def output(self) -> str:
        return Path(self._out_path).read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """End gpsfake and gpsd (SIGTERM to the group, SIGKILL if they linger)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
            # the group may still hold gpsd after gpsfake itself exited
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break
        self._wait_port_free()

    def _wait_port_free(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except OSError:
                return
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        with suppress(OSError):
            os.close(self._out_fd)
        with suppress(OSError):
            os.unlink(self._out_path)


@contextmanager
def gpsfake_server(
    log: Path,
    once: bool = False,
    cycle: float | None = None,
    slow: bool = False,
    wait: bool = True,
) -> Iterator[GpsFake]:
    """Start gpsfake on a free port; retry on another port if that one was taken meanwhile."""
    last: Exception | None = None
    for _attempt in range(3):
        fake = GpsFake(log, once=once, cycle=cycle, slow=slow)
        try:
            fake.start(wait=wait)
        except RuntimeError as exc:
            last = exc
            fake.close()
            continue
        try:
            yield fake
        finally:
            fake.close()
        return
    raise RuntimeError(f"could not start gpsfake: {last}")
