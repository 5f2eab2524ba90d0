"""Real services the demo starts when they are installed: mosquitto with TLS, gpsd via gpsfake."""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

from edge_tools.demo.pki import CertFiles, DemoCA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.1)
    return False


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


class DemoBroker:
    """mosquitto on a free loopback port: client certificates required, ACL per kiosk id."""

    def __init__(self, directory: Path, ca: DemoCA, hq_user: str) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        server: CertFiles = ca.issue("127.0.0.1", server=True)
        acl = self.dir / "acl"
        acl.write_text(
            f"user {hq_user}\ntopic read kiosk/#\ntopic write kiosk/+/acks\n"
            "topic write kiosk/+/roster\n\npattern readwrite kiosk/%u/#\n"
        )
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    # mosquitto started as root drops to user "mosquitto", who cannot read
                    # the demo's files; run it as whoever runs the demo.
                    f"user {getpass.getuser()}",
                    "per_listener_settings false",
                    "persistence true",
                    f"persistence_location {self.dir}/",
                    f"log_dest file {self.dir}/mosquitto.log",
                    f"listener {self.port} 127.0.0.1",
                    f"cafile {ca.cert}",
                    f"certfile {server.cert}",
                    f"keyfile {server.key}",
                    "require_certificate true",
                    "use_identity_as_username true",
                    f"acl_file {acl}",
                    "",
                ]
            )
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not wait_port(self.port, proc=self.proc):
            self.stop()
            raise RuntimeError(f"mosquitto did not start; see {self.dir}/mosquitto.log")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class DemoGps:
    """gpsd fed by gpsfake with a bundled NMEA track, looping, on a free port."""

    def __init__(self, track: Path) -> None:
        binary = shutil.which("gpsfake")
        if binary is None or not (shutil.which("gpsd") or Path("/usr/sbin/gpsd").exists()):
            raise FileNotFoundError("gpsd/gpsfake")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "-n", "-q", "-P", str(self.port), "-c", "0.2", str(track)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            start_new_session=True,
        )
        if not wait_port(self.port, proc=self.proc):
            self.stop()
            raise RuntimeError("gpsfake did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            import os
            import signal

            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
