"""`edge demo`: the whole kiosk flow on embedded defaults, end to end, in a scratch directory.

Real parts wherever they are installed: a gpsd fed by gpsfake on the bundled track,
a mosquitto with mutual TLS, an HQ ingest worker that verifies and acks, the real
face models. The camera is the replay camera on bundled public-domain faces: the
"live" frames show Eileen Collins, so her KPM matches and Grace Hopper's does not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.api import request_json
from edge.config import load_config
from edge.keys import b64, device_id_for, init_device_key
from edge.records import verify_chain
from edge.roster import encode_template, sign_bundle
from edge_tools.demo.pki import DemoCA
from edge_tools.demo.services import DemoBroker, DemoGps, free_port

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
HQ_USER = "hq.demo"
PERIOD = time.strftime("%Y-%m", time.gmtime())  # the month being served
VILLAGE = {"type": "point", "lat": -7.7157, "lon": 110.3648, "radius_m": 1000}


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        for k, v in values.items():
            out.append(f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}")
        out.append("")
    return "\n".join(out)


def _live_frames(directory: Path) -> Path:
    """A few 'live' frames of the KPM: the sample photo, slightly shifted and relit."""
    from PIL import Image, ImageEnhance

    directory.mkdir(parents=True, exist_ok=True)
    base = Image.open(SAMPLES / "faces" / "eileen_collins.jpg").convert("RGB")
    w, h = base.size
    for i, (dx, light) in enumerate([(0, 1.0), (8, 0.9), (-8, 1.1)]):
        frame = base.crop((max(dx, 0), 0, w + min(dx, 0), h)).resize((w, h))
        ImageEnhance.Brightness(frame).enhance(light).save(directory / f"frame_{i}.jpg", quality=92)
    return directory


class Demo:
    def __init__(self, workdir: Path, say: Callable[[str], None]) -> None:
        self.dir = workdir
        self.say = say
        self.stack = contextlib.ExitStack()
        self.hq_signing = SigningKey.generate()
        self.hq_box = PrivateKey.generate()

    def run(self) -> int:
        with self.stack:
            return self._run()

    def _services(self, state: Path) -> tuple[dict[str, Any], dict[str, Any], Any]:
        gps: dict[str, Any] = {"enabled": False}
        try:
            g = DemoGps(SAMPLES / "track.nmea")
            self.stack.callback(g.stop)
            gps = {"enabled": True, "host": "127.0.0.1", "port": g.port}
            self.say(f"gpsd      gpsfake on the bundled track, port {g.port}")
        except FileNotFoundError:
            self.say("gpsd      not installed: records carry geo=null, geofence=unknown")
        mqtt: dict[str, Any] = {"enabled": False}
        broker = None
        try:
            ca = DemoCA(self.dir / "pki")
            broker = DemoBroker(self.dir / "broker", ca, HQ_USER)
            self.stack.callback(broker.stop)
            key = init_device_key(state / "device.key")
            device_id = device_id_for(key.verify_key)
            client = ca.issue(device_id)
            mqtt = {
                "enabled": True,
                "host": "127.0.0.1",
                "port": broker.port,
                "ca_file": str(ca.cert),
                "cert_file": str(client.cert),
                "key_file": str(client.key),
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 2.0,
                "status_interval_s": 5.0,
            }
            self.say(f"broker    mosquitto with mutual TLS on port {broker.port}")
            hq = self._start_hq(ca, broker.port, device_id, key.verify_key)
            return gps, mqtt, hq
        except FileNotFoundError:
            init_device_key(state / "device.key")
            self.say("broker    mosquitto not installed: records stay queued in the outbox")
        return gps, mqtt, None

    def _start_hq(self, ca: DemoCA, port: int, device_id: str, verify_key: Any) -> Any:
        from edge_hq.config import BrokerConfig, DatabaseConfig, HqSettings
        from edge_hq.db import open_database
        from edge_hq.ingest import IngestWorker
        from edge_hq.registry import add_device

        cert = ca.issue(HQ_USER)
        settings = HqSettings(
            broker=BrokerConfig(
                host="127.0.0.1",
                port=port,
                ca_file=str(ca.cert),
                cert_file=str(cert.cert),
                key_file=str(cert.key),
                client_id=HQ_USER,
            ),
            database=DatabaseConfig(url=str(self.dir / "hq.db")),
        )
        db = open_database(settings.database.url)
        add_device(db, device_id, b64(bytes(verify_key)), "demo kiosk")
        worker = IngestWorker(settings, db, signing_key=self.hq_signing)
        worker.start()
        self.stack.callback(worker.stop)
        worker.wait_connected(15)
        self.say("hq        ingest worker subscribed (verifies signatures and chain, acks)")
        return worker

    def _roster(self, model_sha: str, enroll: Callable[[list[Path]], np.ndarray]) -> Path:
        faces = SAMPLES / "faces"
        body = {
            "v": 1,
            "bundle_id": "demo-" + time.strftime("%Y%m%d%H%M%S"),
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            # no validity window (allowed): the kiosk's clock comes from the bundled GPS
            # track, whose date is fixed, so any window would one day exclude it
            "model": model_sha,
            "device_id": "*",
            "entries": [
                {
                    "kpm_id": "KPM-0001",
                    "programme": "sembako",
                    "period": PERIOD,
                    "templates": [encode_template(enroll([faces / "eileen_collins.jpg"]))],
                    "place": VILLAGE,
                },
                {
                    "kpm_id": "KPM-0002",
                    "programme": "pkh",
                    "period": PERIOD,
                    "templates": [encode_template(enroll([faces / "grace_hopper.jpg"]))],
                    "place": VILLAGE,
                },
            ],
        }
        path = self.dir / "roster.json"
        path.write_text(json.dumps(sign_bundle(body, self.hq_signing)))
        return path

    def _run(self) -> int:
        from edge.config import FaceConfig
        from edge.daemon import Daemon
        from edge.infer.images import load_image
        from edge.infer.pipeline import FacePipeline, enroll_template
        from edge.roster import load_bundle_file, verify_bundle
        from edge.store import Store

        state = self.dir / "state"
        self.say(f"workdir   {self.dir}")
        gps, mqtt, hq = self._services(state)
        pipeline = FacePipeline.from_config(FaceConfig())
        roster = self._roster(
            pipeline.embedder_sha256,
            lambda paths: enroll_template(pipeline, [load_image(p) for p in paths]),
        )
        api_port = free_port()
        cfg_path = self.dir / "edge.toml"
        cfg_path.write_text(
            _toml(
                {
                    "device": {"state_dir": str(state), "label": "demo"},
                    "hq": {
                        "signing_public_key": b64(bytes(self.hq_signing.verify_key)),
                        "sealing_public_key": b64(bytes(self.hq_box.public_key)),
                    },
                    "camera": {
                        "backend": "replay",
                        "replay_path": str(_live_frames(self.dir / "live")),
                    },
                    "face": {"burst_frames": 3},
                    "gps": gps,
                    "mqtt": mqtt,
                    "api": {"listen": f"127.0.0.1:{api_port}"},
                }
            )
        )
        cfg = load_config(cfg_path)
        store = Store(cfg.device.db_path)
        bundle = verify_bundle(
            load_bundle_file(roster), self.hq_signing.verify_key, pipeline.embedder_sha256
        )
        store.import_bundle(bundle)
        store.close()
        self.say(
            f"roster    {len(bundle.entries)} KPMs signed by HQ for embedder {bundle.model[:12]}"
        )
        daemon = Daemon(cfg)
        daemon.start()
        self.stack.callback(daemon.stop)
        if gps["enabled"]:
            self._wait(
                lambda: str((daemon.status().get("gps") or {}).get("state")).startswith("fix_"), 20
            )
        listen = cfg.api.listen
        self.say("")
        for kpm, note in (
            ("KPM-0001", "the registered recipient"),
            ("KPM-0002", "someone else collecting for this family"),
            ("KPM-9999", "not on this kiosk's roster"),
            ("KPM-0001", "the same recipient again"),
        ):
            code, answer = request_json(
                listen, "POST", "/v1/verify", {"kpm_id": kpm, "officer_id": "demo-officer"}
            )
            if code != 200:
                self.say(f"verify    {kpm}: HTTP {code}: {answer.get('error')}")
                return 1
            score = answer.get("score")
            self.say(
                f"verify    {kpm} ({note}): {str(answer.get('decision')).upper()}"
                + (
                    f" score {score:.3f} / threshold {answer['threshold']:.3f}"
                    if score is not None
                    else ""
                )
                + (f" [{answer['reason']}]" if answer.get("reason") else "")
                + f" geofence={answer.get('geofence')} clock={answer.get('clock')} seq={answer.get('seq')}"
            )
        total = 4
        if mqtt["enabled"]:
            acked = self._wait(lambda: self._acked(daemon) >= total, 30)
            self.say("")
            self.say(
                f"sync      {self._acked(daemon)}/{total} records acknowledged by HQ"
                + ("" if acked else " (timed out)")
            )
            if hq is not None:
                self.say(f"hq        stored {hq.stats.as_dict()}")
        else:
            self.say(f"sync      {total} records queued (no broker)")
        records = list(daemon.store.iter_records())
        count, problem = verify_chain(records, daemon.key.verify_key)
        self.say(
            f"chain     {count} records, signatures and chain {'intact' if problem is None else problem}"
        )
        return 0

    @staticmethod
    def _acked(daemon: Any) -> int:
        row = daemon.store.conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE state = 'acked'"
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _wait(cond: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.2)
        return False


def run_demo(workdir: Path | None, say: Callable[[str], None] = print) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return Demo(workdir, say).run()
    with tempfile.TemporaryDirectory(prefix="bansos-demo-") as tmp:
        return Demo(Path(tmp), say).run()
