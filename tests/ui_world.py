"""A real `edge run` for the kiosk-screen tests: replay camera on a FIFO whose frame the
test switches (QR card, badge, face, a printed photo held up), real mosquitto + an HQ that acks on demand, gpsfake,
a signed roster with a current and an expired bundle, and an officers file.

Reuses the daemon e2e pieces (NotifyListener, FifoFeed) and the MQTT/gpsd fixtures.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import segno
from PIL import Image

from bansos_contract.utc import iso_s as format_utc
from bansos_contract.utc import parse as parse_utc
from edge.config import FaceConfig
from edge.infer.images import load_image
from edge.infer.pipeline import FacePipeline, enroll_template
from edge.keys import device_id_for, init_device_key
from edge.roster import encode_template, sign_bundle
from edge.ui.officers import hash_pin
from tests.conftest import REPO, HqKeys, WriteConfig, run_edge
from tests.hq_sim import HqSim
from tests.support.daemon import spawn_daemon, stop_daemon
from tests.support.gpsd import gpsfake_server
from tests.support.helpers import free_port, toml_value
from tests.support.mqtt import Broker, Pki
from tests.test_daemon_e2e import FACES, PLACE, TRACK, FifoFeed, NotifyListener
from tests.uplink_support import mqtt_config

PIN = "1234"
PAD = REPO / "tests" / "data" / "pad"
# KPM-0004's roster template is made from the face on the print itself (image_F1, the
# upstream attack sample): face matching alone would say match, so only PAD stands between
# the print and a handover
SPOOF_KPM = "KPM-0004"
SPOOF_PHOTO = PAD / "image_F1.jpg"


def attack_frame() -> np.ndarray:
    """What the camera sees when the print is held up (EXIF orientation 6 applied)."""
    return load_image(SPOOF_PHOTO)


OFFICERS = [
    ("officer-007", "Siti Rahma", "BADGE-7F3A9C"),
    ("officer-008", "Budi Santoso", None),
]


def qr_frame(text: str, size: int = 640) -> np.ndarray:
    """A camera-sized RGB frame with a QR code in its middle (what the replay camera gives)."""
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=8, border=4)
    code = Image.open(buf).convert("RGB")
    frame = Image.new("RGB", (size, size * 3 // 4), (200, 200, 200))
    frame.paste(code, ((frame.width - code.width) // 2, (frame.height - code.height) // 2))
    return np.asarray(frame)


class SwitchFeed(FifoFeed):
    """A FifoFeed whose frame the test can change while the daemon reads it."""

    def show(self, frame: np.ndarray) -> None:
        self.frame = frame

    def _run(self) -> None:
        shown, data = None, b""
        with open(self.path, "wb") as fifo:  # blocks until the daemon opens it
            while not self._stop.is_set():
                if not self.running.wait(0.2):
                    continue
                if shown is not self.frame:
                    shown, buf = self.frame, io.BytesIO()
                    np.save(buf, shown)
                    data = buf.getvalue()
                try:
                    fifo.write(data)
                    fifo.flush()
                except BrokenPipeError:
                    return


@dataclass
class UiWorld:
    proc: subprocess.Popen[bytes]
    url: str
    listen: str
    feed: SwitchFeed
    broker: Broker
    hq: HqSim
    db_path: Path
    officers_file: Path
    log: Path

    def count(self, sql: str) -> int:
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10) as conn:
            return int(conn.execute(sql).fetchone()[0])

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _bundle(
    pipeline: FacePipeline,
    device_id: str,
    bundle_id: str,
    programme: str,
    period: str,
    people: list[tuple[str, str | Path]],
    window: tuple[float, float],
) -> dict[str, Any]:
    return {
        "v": 1,
        "bundle_id": bundle_id,
        "issued_at": format_utc(window[0]),
        "valid_from": format_utc(window[0]),
        "valid_until": format_utc(window[1]),
        "model": pipeline.embedder_sha256,
        "device_id": device_id,
        "entries": [
            {
                "kpm_id": kpm,
                "programme": programme,
                "period": period,
                # a bare name is one of the face fixtures; a path is taken as is
                "templates": [encode_template(enroll_template(pipeline, [FACES / photo]))],
                "place": PLACE,
            }
            for kpm, photo in people
        ],
    }


def write_officers(path: Path) -> None:
    lines = []
    for oid, name, badge in OFFICERS:
        lines += ["[[officer]]", f"id = {toml_value(oid)}", f"name = {toml_value(name)}"]
        lines.append(f"pin_hash = {toml_value(hash_pin(PIN))}")
        if badge:
            lines.append(f"badge = {toml_value(badge)}")
    path.write_text("\n".join(lines) + "\n")


@contextmanager
def ui_world(
    tmp_path: Path, pki: Pki, broker: Broker, write_config: WriteConfig, hq_keys: HqKeys
) -> Iterator[UiWorld]:
    """Start the daemon and wait until the API answers; stops everything on exit."""
    state = tmp_path / "state"
    key = init_device_key(state / "device.key")
    device_id = device_id_for(key.verify_key)
    # acks signed with the HQ key this kiosk's config trusts (write_config's hq_keys)
    hq = HqSim(broker, pki.client("hq.ingest"), signing_key=hq_keys.signing).start()
    pipeline = FacePipeline.from_config(FaceConfig())
    # the kiosk takes its time from the GPS track (2026-11-02), so the windows are absolute
    current = _bundle(
        pipeline,
        device_id,
        "ui-current",
        "sembako",
        "2026-11",
        [
            ("KPM-0001", "eileen_collins.jpg"),
            ("KPM-0002", "grace_hopper.jpg"),
            (SPOOF_KPM, SPOOF_PHOTO),
        ],
        (parse_utc("2026-11-01T00:00:00Z"), parse_utc("2026-12-01T00:00:00Z")),
    )
    expired = _bundle(
        pipeline,
        device_id,
        "ui-expired",
        "pkh",
        "2026-10",
        [("KPM-0003", "grace_hopper.jpg")],
        (parse_utc("2026-09-01T00:00:00Z"), parse_utc("2026-10-01T00:00:00Z")),
    )
    officers = tmp_path / "officers.toml"
    write_officers(officers)
    feed = SwitchFeed(tmp_path / "camera.fifo", qr_frame("KPM-0001"))
    tls = pki.client(device_id)
    listen = f"127.0.0.1:{free_port()}"
    with gpsfake_server(TRACK, cycle=0.2) as gps:
        cfg = write_config(
            device={"state_dir": str(state)},
            camera={"backend": "replay", "replay_path": str(feed.path), "frame_timeout_s": 2.0},
            face={"burst_frames": 2},
            gps={"enabled": True, "host": gps.host, "port": gps.port},
            mqtt=dataclasses.asdict(mqtt_config(broker, tls, reconnect_max_s=1.0)),
            outbox={"resend_after_s": 2.0},
            api={"listen": listen},
            ui={"officers_file": str(officers), "max_attempts": 3, "pin_lockout_after": 3},
        )
        for name, body in (("current", current), ("expired", expired)):
            path = tmp_path / f"roster-{name}.json"
            path.write_text(json.dumps(sign_bundle(body, hq_keys.signing)))
            done = run_edge("roster", "import", "--config", str(cfg), str(path))
            assert done.returncode == 0, done.stderr
        notify = NotifyListener(tmp_path / "notify.sock")
        log_path = tmp_path / "daemon.log"
        log = open(log_path, "wb")  # noqa: SIM115
        proc = spawn_daemon(cfg, notify.path, log)
        world = UiWorld(
            proc,
            f"http://{listen}",
            listen,
            feed,
            broker,
            hq,
            state / "edge.db",
            officers,
            log_path,
        )
        try:
            deadline = time.monotonic() + 120
            while not notify.seen("READY=1"):
                assert proc.poll() is None, world.log_tail()
                assert time.monotonic() < deadline, "daemon not READY in 120 s\n" + world.log_tail()
                time.sleep(0.1)
            yield world
        finally:
            stop_daemon(proc)
            log.close()
            notify.close()
            feed.close()
            hq.stop()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def kiosk_browser(user_data: Path) -> Iterator[Any]:
    """Headless Debian Chromium at the Pi 7" display size, driven by Playwright; a Page."""
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: run scripts/setup.sh (apt package chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 800, "height": 480},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            context.close()


def screenshot_dir(tmp_path: Path) -> Path:
    """$BANSOS_UI_SCREENSHOTS (to refresh docs/ui/) or the test's tmp dir."""
    out = Path(os.environ.get("BANSOS_UI_SCREENSHOTS") or tmp_path / "screens")
    out.mkdir(parents=True, exist_ok=True)
    return out
