"""Uplink drain rate vs a naive publish-and-wait loop, and bytes per record on the wire.

Run by hand (needs Debian's mosquitto): `python -m bench.uplink [-n 2000] [--inflight 100]`.

Both sides run in this one process against the same broker (the shipped config, TLS with
client certificates, on a free loopback port), with the same records:
- baseline: one paho client publishes a record at QoS 1 and waits for its PUBACK, then the next;
- uplink: `edge.uplink.Uplink` drains the same outbox (in-flight window, batched commits),
  with a small HQ that acks; timed to every PUBACK ("sent") and to every HQ ack ("acked").
Bytes: the record's JSON and its compressed wire payload (bansos_contract.wire; the naive loop
sends the JSON), the MQTT PUBLISH packet per record (computed from the packet layout), and the
TLS bytes the kernel sent per record (TCP `bytes_sent` from `ss -ti` for the kiosk's socket).
The round trip comes from tests/link_emulator.py (delay only, no bandwidth cap).
Evidence: an aligned-size 112x112 JPEG crop of a face from ../shared/data (made in memory,
never written) and a 128-float embedding, sealed to HQ's key, as the kiosk would send.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from bansos_contract.wire import encode
from edge.keys import device_id_for
from edge.records import Evidence, seal_evidence
from edge.store import Store
from edge.uplink import Uplink
from tests.hq_sim import HqSim
from tests.link_emulator import FOREVER, LinkEmulator, LinkSpec, Phase
from tests.roster_fixtures import make_verification, record_builder
from tests.support.helpers import wait_for
from tests.support.hq import HQ_VERIFY_KEY
from tests.support.mqtt import Broker, Pki, connect_client
from tests.uplink_support import mqtt_config, outbox_config

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces-dev"


def face_crop() -> bytes:
    """A 112x112 JPEG (quality 90, as edge.verification writes it) from a real photo."""
    from PIL import Image

    photo = next(iter(sorted(FACES.glob("*/*.jpg"))))
    img = Image.open(photo).convert("RGB")
    w, h = img.size
    s = min(w, h) // 2
    crop = img.crop((w // 2 - s // 2, h // 2 - s // 2, w // 2 + s // 2, h // 2 + s // 2))
    buf = io.BytesIO()
    crop.resize((112, 112)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def fill(db: Path, key: SigningKey, n: int, evidence: bool) -> None:
    did = device_id_for(key.verify_key)
    box = PrivateKey.generate().public_key
    crop = face_crop() if evidence else b""
    store = Store(db)
    with store.transaction():
        for i in range(1, n + 1):
            v = make_verification(i)
            if evidence:
                emb = np.random.default_rng(i).normal(size=128).astype("<f4").tobytes()
                v = dataclasses.replace(v, evidence=seal_evidence(Evidence(crop, emb), box))
            store.append(record_builder(v, did, key))
    store.close()


def delay_link(target_port: int, rtt_ms: float) -> LinkEmulator:
    """The link emulator with only a round trip (no jitter, 1 Gbit/s): what a window hides.

    netem is not available here; this gives both contenders the same round-trip time.
    """
    spec = LinkSpec(f"rtt{rtt_ms:g}ms", rtt_ms / 2.0, 0.0, 1e6, 1e6)
    return LinkEmulator(target_port, [Phase(FOREVER, spec)]).start()


def publish_packet_bytes(topic: str, payload_len: int) -> int:
    """MQTT v5 PUBLISH at QoS 1: fixed header + topic + packet id + empty properties + payload."""
    remaining = 2 + len(topic.encode()) + 2 + 1 + payload_len
    varint = 1 if remaining < 128 else 2 if remaining < 16384 else 3 if remaining < 2097152 else 4
    return 1 + varint + remaining


def local_port(sock: Any) -> int:
    """The local port of a connected socket (0 if there is none)."""
    return int(sock.getsockname()[1]) if sock is not None else 0


def tcp_bytes_sent(local_port: int) -> int:
    """Bytes the kernel sent on the loopback socket bound to `local_port` (TLS included)."""
    out = subprocess.run(
        ["ss", "-tinH", "sport", f"= :{local_port}"], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"bytes_sent:(\d+)", out)
    return int(m.group(1)) if m else 0


def naive(
    broker: Broker, port: int, pki: Pki, device_id: str, bodies: list[bytes]
) -> tuple[float, int]:
    """One publish, wait for its PUBACK, next: seconds and TLS bytes sent for the publishes."""
    c = connect_client(broker, pki.client(device_id), port=port)
    local = local_port(c.socket())
    topic = f"kiosk/{device_id}/records"
    before = tcp_bytes_sent(local)
    t0 = time.perf_counter()
    for body in bodies:
        c.publish(topic, body, qos=1).wait_for_publish(30)
    elapsed = time.perf_counter() - t0
    sent = tcp_bytes_sent(local) - before
    c.disconnect()
    c.loop_stop()
    return elapsed, sent


def drain(
    broker: Broker, port: int, pki: Pki, db: Path, device_id: str, n: int, inflight: int, until: str
) -> dict[str, float]:
    """Time the Uplink until every record is PUBACKed (`until="sent"`) or acked by HQ."""
    store = Store(db)
    tls = pki.client(device_id)
    cfg = mqtt_config(broker, tls, inflight=inflight, port=port)
    up = Uplink(store, cfg, outbox_config(resend_after_s=3600.0), device_id, HQ_VERIFY_KEY, "m")
    t0 = time.perf_counter()
    up.start()
    while True:
        c = up.counters  # cheap: no database read while timing
        done = c["puback"] >= n if until == "sent" else c["acked"] >= n
        if done:
            elapsed = time.perf_counter() - t0
            break
        time.sleep(0.002)
        if time.perf_counter() - t0 > 600:
            raise TimeoutError("uplink did not drain in 600 s")
    link = up._link  # bench-only peek at the live socket for the kernel's byte count
    local = local_port(link.client.socket()) if link is not None else 0
    tls_bytes = tcp_bytes_sent(local) if local else 0
    up.stop(20)
    store.close()
    return {"s": elapsed, "tls_bytes": tls_bytes}


def run_one(
    root: Path, pki: Pki, n: int, inflight: int, evidence: bool, rtt_ms: float
) -> dict[str, Any]:
    """Baseline then uplink on one fresh broker (no HQ session left over from another run)."""
    broker = Broker(root / f"broker-{evidence}-{rtt_ms}", pki)
    broker.start()
    proxy = delay_link(broker.port, rtt_ms) if rtt_ms > 0 else None
    try:
        port = proxy.port if proxy else broker.port
        return {"rtt_ms": rtt_ms, **_run_one(root, pki, broker, port, n, inflight, evidence)}
    finally:
        if proxy:
            proxy.close()
        broker.kill9()


def _run_one(
    root: Path, pki: Pki, broker: Broker, port: int, n: int, inflight: int, evidence: bool
) -> dict[str, Any]:
    key = SigningKey.generate()
    did = device_id_for(key.verify_key)
    db = root / f"edge-{'ev' if evidence else 'noev'}-{port}.db"
    fill(db, key, n, evidence)
    store = Store(db)
    bodies = [
        b.encode() for _, b in store.conn.execute("SELECT seq, body FROM records ORDER BY seq")
    ]
    store.close()
    base_s, base_tls = naive(broker, port, pki, did, bodies)
    d = drain(broker, port, pki, db, did, n, inflight, "sent")
    store = Store(db)  # same records again, now with HQ acking (in this process: shares the GIL)
    store.conn.execute("UPDATE outbox SET state = 'pending', sent_at = NULL")
    store.close()
    hq = HqSim(broker, pki.client("hq.ingest")).start()
    wait_for(lambda: hq.connects > 0, 20, "HQ")
    acked = drain(broker, port, pki, db, did, n, inflight, "acked")
    hq.stop()
    topic = f"kiosk/{did}/records"
    mean_body = sum(len(b) for b in bodies) / n
    return {
        "evidence": evidence,
        "records": n,
        "baseline_records_per_s": round(n / base_s, 1),
        "uplink_records_per_s_to_puback": round(n / d["s"], 1),
        "uplink_records_per_s_to_hq_ack": round(n / acked["s"], 1),
        "ratio_puback_vs_baseline": round(base_s / d["s"], 2),
        "ratio_hq_ack_vs_baseline": round(base_s / acked["s"], 2),
        "record_json_bytes": round(mean_body, 1),
        "wire_payload_bytes": round(sum(len(encode(b)) for b in bodies) / n, 1),
        "mqtt_publish_bytes_per_record_json": round(
            sum(publish_packet_bytes(topic, len(b)) for b in bodies) / n, 1
        ),
        "mqtt_publish_bytes_per_record_wire": round(
            sum(publish_packet_bytes(topic, len(encode(b))) for b in bodies) / n, 1
        ),
        "tls_bytes_per_record_baseline": round(base_tls / n, 1),
        "tls_bytes_per_record_uplink": round(d["tls_bytes"] / n, 1) if d["tls_bytes"] else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=2000, help="records per run on plain loopback")
    p.add_argument("--rtt-ms", type=float, default=40.0, help="added round trip (0: skip)")
    p.add_argument("--rtt-n", type=int, default=300, help="records per run with --rtt-ms")
    p.add_argument("--inflight", type=int, default=100)  # the shipped mqtt.inflight
    p.add_argument("--dir", type=Path, default=None)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        root = Path(tmp)
        pki = Pki(root / "pki")
        runs = [(a.n, 0.0)] + ([(a.rtt_n, a.rtt_ms)] if a.rtt_ms > 0 else [])
        results = [
            run_one(root, pki, n, a.inflight, ev, rtt) for n, rtt in runs for ev in (False, True)
        ]
    print(
        json.dumps(
            {
                "machine": platform.machine(),
                "python": platform.python_version(),
                "inflight": a.inflight,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
