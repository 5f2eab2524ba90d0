"""A throw-away certificate authority for the demo, made with the `openssl` command.

The fleet's real CA lives on the Ansible controller (ansible/roles/fleet_ca); this
one exists only for the demo's lifetime, in its temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge.errors import DeviceMissing


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


class DemoCA:
    """A P-256 CA that signs a server certificate for 127.0.0.1 and client certs by CN."""

    def __init__(self, directory: Path) -> None:
        if shutil.which("openssl") is None:
            raise DeviceMissing("openssl is not installed (apt-get install openssl)")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.crt"
        self.key = self.dir / "ca.key"
        _openssl(
            "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=self.dir
        )
        _openssl(
            "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "2",
            "-subj", "/CN=bansos-edge demo CA", "-out", "ca.crt", cwd=self.dir,
        )  # fmt: skip

    def issue(self, common_name: str, server: bool = False) -> CertFiles:
        stem = "server" if server else "client-" + common_name.replace("/", "_")
        key, csr, crt, ext = (self.dir / f"{stem}.{s}" for s in ("key", "csr", "crt", "ext"))
        _openssl(
            "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key.name, cwd=self.dir
        )
        _openssl(
            "req",
            "-new",
            "-key",
            key.name,
            "-subj",
            f"/CN={common_name}",
            "-out",
            csr.name,
            cwd=self.dir,
        )
        if server:
            ext.write_text(
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
            )
        else:
            ext.write_text("extendedKeyUsage=clientAuth\n")
        _openssl(
            "x509", "-req", "-in", csr.name, "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext.name, "-out", crt.name,
            cwd=self.dir,
        )  # fmt: skip
        key.chmod(0o600)
        return CertFiles(crt, key)
