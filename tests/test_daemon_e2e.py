"""`edge run` end to end: a real subprocess under a notify socket bound by the test, a real
gpsd (gpsfake), a real mosquitto with mutual TLS, the real HQ ingest, the real face models
and a replay camera fed through a FIFO (so the test can stall it like a wedged camera).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_hq.config import BrokerConfig, DatabaseConfig, HqSettings
from edge_hq.db import open_database
from edge_hq.ingest import IngestWorker
from edge_hq.registry import add_device
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from edge.api import request_json
from edge.config import FaceConfig
from edge.infer.images import load_image
from edge.infer.pipeline import FacePipeline, enroll_template
from edge.keys import b64, device_id_for, init_device_key
from edge.records import verify_chain
from edge.roster import encode_template, sign_bundle
from tests.conftest import REPO
from tests.hq_sim import HqSim
from tests.support.daemon import spawn_daemon
from tests.support.gpsd import gpsfake_server
from tests.support.helpers import free_port, wait_for, write_toml
from tests.support.mqtt import Broker, Pki

FACES = REPO / "edge" / "samples" / "faces"
TRACK = REPO / "edge" / "samples" / "track.nmea"
PLACE = {"type": "point", "lat": -7.7157, "lon": 110.3648, "radius_m": 1000}


class NotifyListener:
    """Collects sd_notify datagrams the daemon sends to $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode()))

    def seen(self, prefix: str, since: float = 0.0) -> list[str]:
        with self.lock:
            return [
                line
                for t, m in self.messages
                if t >= since
                for line in m.splitlines()
                if line.startswith(prefix)
            ]

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


class FifoFeed:
    """Writes the live frames into the replay camera's FIFO until stalled."""

    def __init__(self, path: Path, frame: np.ndarray) -> None:
        self.path = path
        os.mkfifo(path)
        self.frame = frame
        self.running = threading.Event()
        self.running.set()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buf = io.BytesIO()
        np.save(buf, self.frame)
        data = buf.getvalue()
        with open(self.path, "wb") as fifo:  # blocks until the daemon opens it
            while not self._stop.is_set():
                if not self.running.wait(0.2):
                    continue
                try:
                    fifo.write(data)
                    fifo.flush()
                except BrokenPipeError:
                    return

    def close(self) -> None:
        self._stop.set()
        self.running.set()


@pytest.fixture
def world(tmp_path: Path, pki: Pki, broker: Broker) -> Iterator[dict[str, Any]]:
    state = tmp_path / "state"
    key = init_device_key(state / "device.key")
    device_id = device_id_for(key.verify_key)
    hq_signing, hq_box = SigningKey.generate(), PrivateKey.generate()
    # HQ: the real ingest worker, with the device registered
    hq_tls = pki.client("hq.ingest.2")
    settings = HqSettings(
        broker=BrokerConfig(
            host=broker.host,
            port=broker.port,
            ca_file=str(hq_tls.ca_file),
            cert_file=str(hq_tls.cert_file),
            key_file=str(hq_tls.key_file),
            client_id="hq.ingest.2",
        ),
        database=DatabaseConfig(url=str(tmp_path / "hq.db")),
    )
    db = open_database(settings.database.url)
    add_device(db, device_id, b64(bytes(key.verify_key)))
    worker = IngestWorker(settings, db, signing_key=hq_signing)
    worker.start()
    assert worker.wait_connected(20)
    status_watch = HqSim(broker, pki.client("hq.ingest"), ack=False).start()
    # the roster, enrolled with the real embedder and signed by HQ
    pipeline = FacePipeline.from_config(FaceConfig())
    body = {
        "v": 1,
        "bundle_id": "e2e-1",
        "issued_at": "2026-11-01T00:00:00Z",
        "model": pipeline.embedder_sha256,
        "device_id": device_id,
        "entries": [
            {
                "kpm_id": kpm,
                "programme": "sembako",
                "period": "2026-11",
                "templates": [encode_template(enroll_template(pipeline, [FACES / photo]))],
                "place": PLACE,
            }
            for kpm, photo in (("KPM-0001", "eileen_collins.jpg"), ("KPM-0002", "grace_hopper.jpg"))
        ],
    }
    roster = tmp_path / "roster.json"
    roster.write_text(json.dumps(sign_bundle(body, hq_signing)))
    feed = FifoFeed(tmp_path / "camera.fifo", load_image(FACES / "eileen_collins.jpg"))
    tls = pki.client(device_id)
    with gpsfake_server(TRACK, cycle=0.2) as gps:
        sections: dict[str, dict[str, Any]] = {
            "device": {"state_dir": str(state)},
            "hq": {
                "signing_public_key": b64(bytes(hq_signing.verify_key)),
                "sealing_public_key": b64(bytes(hq_box.public_key)),
            },
            "camera": {"backend": "replay", "replay_path": str(feed.path), "frame_timeout_s": 1.0},
            "face": {"burst_frames": 3},
            "gps": {"host": gps.host, "port": gps.port},
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "ca_file": str(tls.ca_file),
                "cert_file": str(tls.cert_file),
                "key_file": str(tls.key_file),
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 2.0,
                "status_interval_s": 5.0,
            },
            "api": {"listen": f"127.0.0.1:{free_port()}"},
        }
        cfg = write_toml(tmp_path / "edge.toml", sections)
        imported = subprocess.run(
            [sys.executable, "-m", "edge", "roster", "import", "--config", str(cfg), str(roster)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert imported.returncode == 0, imported.stderr
        notify = NotifyListener(tmp_path / "notify.sock")
        log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115
        proc = spawn_daemon(cfg, notify.path, log, watchdog_usec=2_000_000)
        try:
            yield {
                "proc": proc,
                "notify": notify,
                "listen": sections["api"]["listen"],
                "cfg": cfg,
                "db": db,
                "worker": worker,
                "device_id": device_id,
                "verify_key": key.verify_key,
                "status_watch": status_watch,
                "feed": feed,
                "log": tmp_path / "daemon.log",
                "hq_box": hq_box,
            }
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            log.close()
            notify.close()
            feed.close()
            worker.stop()
            status_watch.stop()


def _verify(listen: str, kpm: str) -> tuple[int, dict[str, Any]]:
    return request_json(listen, "POST", "/v1/verify", {"kpm_id": kpm, "officer_id": "off-7"})


@pytest.mark.slow  # the whole daemon (and a browser) end to end, 20-35 s
def test_daemon_end_to_end(world: dict[str, Any]) -> None:
    proc, notify, listen = world["proc"], world["notify"], world["listen"]
    log_tail = lambda: world["log"].read_text()[-3000:]  # noqa: E731

    wait_for(lambda: notify.seen("READY=1") or proc.poll() is not None, 120, "READY=1")
    assert proc.poll() is None, log_tail()
    wait_for(lambda: notify.seen("WATCHDOG=1"), 20, "first WATCHDOG=1")
    # verifications through the API
    wait_for(
        lambda: request_json(listen, "GET", "/v1/status")[1]["gps"]["state"] == "fix_3d",
        30,
        "gps fix",
    )
    answers = {}
    for kpm in ("KPM-0001", "KPM-0002", "KPM-9999"):
        code, answers[kpm] = _verify(listen, kpm)
        assert code == 200, answers[kpm]
    assert answers["KPM-0001"]["decision"] == "match", answers
    assert answers["KPM-0001"]["geofence"] == "inside"
    assert answers["KPM-0001"]["frames_used"] >= 1 and answers["KPM-0001"]["frames_total"] == 3
    assert answers["KPM-0002"]["decision"] == "no_match"
    assert answers["KPM-9999"]["decision"] == "not_eligible"
    assert _verify(listen, "KPM-0001")[1]["decision"] == "already_served"
    code, body = _verify(listen, "bad id with spaces")
    assert code == 400 and "kpm_id" in body["error"]
    # HQ stored every record once, verified; the outbox ends all acked
    db = world["db"]
    wait_for(lambda: db.one("SELECT COUNT(*) FROM records")[0] == 4, 60, "4 records at HQ")
    bodies = [json.loads(r[0]) for r in db.rows("SELECT body FROM records ORDER BY seq")]
    vk: VerifyKey = world["verify_key"]
    assert verify_chain(bodies, vk, world["device_id"]) == (4, None)
    assert db.one("SELECT COUNT(*) FROM quarantine")[0] == 0
    wait_for(
        lambda: request_json(listen, "GET", "/v1/status")[1]["outbox"]["acked"] == 4,
        60,
        "outbox all acked",
    )
    status = request_json(listen, "GET", "/v1/status")[1]
    assert status["broker"]["connected"] is True
    assert status["model"]["embedder_sha256"] == bodies[0]["model"]
    assert status["clock"]["source"] in ("gps", "ntp")
    assert "rgb" not in json.dumps(status)

    # SIGHUP with a broken config: refused, old config keeps serving
    cfg: Path = world["cfg"]
    good = cfg.read_text()
    cfg.write_text(good + "\n[face]\nthreshold = 7\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in world["log"].read_text(), 30, "reload refused in the log")
    assert request_json(listen, "GET", "/v1/status")[0] == 200
    # a good new config is taken
    cfg.write_text(good.replace("burst_frames = 3", "burst_frames = 2"))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded" in world["log"].read_text(), 60, "config reloaded")
    code, again = _verify(listen, "KPM-0002")
    assert code == 200 and again["frames_total"] == 2

    # a stalled camera stops the watchdog pings
    world["feed"].running.clear()
    stalled_at = time.monotonic()
    wait_for(lambda: notify.seen("STATUS=unhealthy: camera", stalled_at), 60, "unhealthy status")
    quiet_from = time.monotonic() + 2.5  # allow a ping already on its way
    time.sleep(6)
    assert not notify.seen("WATCHDOG=1", quiet_from), "watchdog kept pinging with a stalled camera"
    assert request_json(listen, "GET", "/v1/health")[0] == 503
    world["feed"].running.set()
    wait_for(lambda: notify.seen("WATCHDOG=1", time.monotonic() - 1), 60, "pings resume")

    # SIGTERM: clean exit 0, STOPPING, and the retained status says offline
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log_tail()
    assert notify.seen("STOPPING=1")
    watch = world["status_watch"]
    wait_for(lambda: watch.states(world["device_id"])[-1:] == ["offline"], 30, "offline status")
