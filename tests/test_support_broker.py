"""The test broker's restart survives its port being taken for a moment (as a client's
TCP self-connect to the downed broker's port does in the fleet reconnect test)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from tests.support.mqtt import Broker, Pki


def test_restart_waits_out_a_port_taken_for_a_moment(tmp_path: Path, pki: Pki) -> None:
    b = Broker(tmp_path / "broker", pki)
    b.start()
    try:
        b.kill9()
        squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        squatter.bind((b.host, b.port))
        squatter.listen(1)
        threading.Timer(1.5, squatter.close).start()
        b.start()  # mosquitto's first tries exit "Address already in use"
        assert b.running and b.starts == 2
    finally:
        b.kill9()
        pki.forget(b.register)
