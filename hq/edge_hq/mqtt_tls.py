"""TLS set-up for HQ's MQTT clients, with file errors turned into a clear BadInput."""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt

from edge.errors import BadInput
from edge_hq.config import BrokerConfig


def apply_tls(client: mqtt.Client, b: BrokerConfig, source: str, roster: bool = False) -> None:
    """CA + client certificate from the config; names the key whose file is wrong."""
    if not b.tls:
        return
    cert_key = "roster_cert_file" if roster and b.roster_cert_file else "cert_file"
    key_key = "roster_key_file" if roster and b.roster_key_file else "key_file"
    files = {"ca_file": b.ca_file, cert_key: getattr(b, cert_key), key_key: getattr(b, key_key)}
    for key, path in files.items():
        if not Path(path).is_file():
            raise BadInput(f"{source}: broker.{key}: no such file {path!r}")
    try:
        client.tls_set(ca_certs=files["ca_file"], certfile=files[cert_key], keyfile=files[key_key])
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise BadInput(
            f"{source}: broker.{cert_key}/{key_key}: not a usable certificate and key ({exc})"
        ) from None
