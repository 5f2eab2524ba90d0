"""Run one kiosk's Uplink over an existing database until its outbox is drained (or killed).

Used as a separate process by the uplink tests (SIGKILL points, network namespace):
`python -m tests.uplink_runner --db ... --host ... --port ... --ca ... --cert ... --key ...`.
Exits 0 when every record is acked, 1 on timeout; prints the final stats as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from edge.config import MqttConfig, OutboxConfig
from edge.store import Store
from edge.uplink import Uplink
from tests.support.hq import HQ_VERIFY_KEY


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--keepalive", type=int, default=5)
    p.add_argument("--resend-after", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--linger", type=float, default=0.0, help="keep running after drained")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s uplink %(message)s")
    mqtt_cfg = MqttConfig(
        host=a.host,
        port=a.port,
        ca_file=a.ca,
        cert_file=a.cert,
        key_file=a.key,
        keepalive_s=a.keepalive,
        reconnect_min_s=0.1,
        reconnect_max_s=2.0,
        connect_timeout_s=5.0,
        status_interval_s=2.0,
    )
    outbox_cfg = OutboxConfig(resend_after_s=a.resend_after)
    store = Store(a.db)
    up = Uplink(store, mqtt_cfg, outbox_cfg, a.device, HQ_VERIFY_KEY, "model")
    up.start()
    deadline = time.monotonic() + a.timeout
    code = 1
    while time.monotonic() < deadline:
        if up.outbox.stats().depth == 0:
            code = 0
            break
        time.sleep(0.1)
    time.sleep(a.linger)
    stats = up.stats()
    up.stop(10)
    store.close()
    sys.stdout.write(json.dumps(stats, default=str) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
