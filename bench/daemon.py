"""Daemon start-up and request cost: `python -m bench.daemon [-n N]`.

Measures, in one run: time from exec to READY=1 and peak RSS (VmHWM) of `edge run`
with every model loaded (detector, embedder, both PAD models); then the time per
verification through the local API against the same burst decided by the pipeline
called directly in this process, as a ratio (the API's overhead: HTTP, roster lookup,
geotag, signing, commit); and the cost of presentation-attack detection: the same burst
with PAD against without it, alternating in this process. MQTT and gpsd are off so only
the daemon is measured. Before the daemon process starts, the same verification runs in
this process through a real Daemon, stage by stage (bench/budget.py): capture, detect,
align, quality, PAD gates, PAD, embed, evidence, sign+commit, other. The frame is the
sample photo cut to the kiosk's 4:3 and sized 640x480, as the camera delivers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from nacl.signing import SigningKey
from PIL import Image

from bench.budget import STAGES, stage_budget
from edge.api import request_json
from edge.config import FaceConfig, LivenessConfig, load_config
from edge.daemon import Daemon
from edge.infer.images import load_image
from edge.infer.pipeline import FacePipeline, enroll_template
from edge.keys import b64, init_device_key
from edge.roster import encode_template, sign_bundle

REPO = Path(__file__).resolve().parents[1]
FACE = REPO / "edge" / "samples" / "faces" / "eileen_collins.jpg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _rollup(pid: int) -> dict[str, int]:
    """Resident bytes by kind from /proc/PID/smaps_rollup: anonymous (heap, arenas, packed
    weights) against file-backed (libraries, mapped files), which are shareable and clean."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            kb[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return {"rss": kb["Rss"], "anon": kb["Anonymous"], "file": kb["Rss"] - kb["Anonymous"]}


def _dump_smaps(pid: int, name: str) -> None:
    if os.environ.get("BENCH_SMAPS_DIR"):
        Path(os.environ["BENCH_SMAPS_DIR"], name).write_text(Path(f"/proc/{pid}/smaps").read_text())


def kiosk_frame(src: Path, dst: Path) -> Path:
    """The sample photo as a 640x480 camera frame: centre cut to 4:3, resized."""
    img = Image.open(src).convert("RGB")
    w, h = img.size
    ch = min(h, w * 3 // 4)
    top = (h - ch) // 2
    img.crop((0, top, w, top + ch)).resize((640, 480), Image.Resampling.BILINEAR).save(dst)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=20, help="verifications per side")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    state = tmp / "state"
    init_device_key(state / "device.key")
    hq = SigningKey.generate()
    frame_path = kiosk_frame(FACE, tmp / "frame.png")
    pipeline = FacePipeline.from_config(FaceConfig(burst_frames=3), liveness_cfg=LivenessConfig())
    no_pad = FacePipeline.from_config(FaceConfig(burst_frames=3))
    template = enroll_template(pipeline, [FACE])
    budget_ids = [f"KPM-1{i:04d}" for i in range(args.n)]
    entries = [
        {
            "kpm_id": f"KPM-{i:05d}",
            "programme": "sembako",
            "period": "2026-11",
            "templates": [encode_template(template)],
            "place": None,
        }
        for i in range(args.n)
    ] + [
        {
            "kpm_id": kpm,
            "programme": "sembako",
            "period": "2026-11",
            "templates": [encode_template(template)],
            "place": None,
        }
        for kpm in budget_ids
    ]
    bundle = {
        "v": 1,
        "bundle_id": "bench",
        "issued_at": "2026-11-01T00:00:00Z",
        "model": pipeline.embedder_sha256,
        "device_id": "*",
        "entries": entries,
    }
    (tmp / "roster.json").write_text(json.dumps(sign_bundle(bundle, hq)))
    listen = f"127.0.0.1:{_free_port()}"
    cfg = tmp / "edge.toml"
    cfg.write_text(
        f'[device]\nstate_dir = "{state}"\n[hq]\nsigning_public_key = "{b64(bytes(hq.verify_key))}"\n'
        f'[camera]\nbackend = "replay"\nreplay_path = "{frame_path}"\n[face]\nburst_frames = 3\n'
        f'[gps]\nenabled = false\n[mqtt]\nenabled = false\n[api]\nlisten = "{listen}"\n'
    )
    edge = [sys.executable, "-m", "edge"]
    subprocess.run(
        [*edge, "roster", "import", "--config", str(cfg), str(tmp / "roster.json")], check=True
    )
    # its own port: the daemon process must not meet this one's socket
    own = tmp / "edge-in-process.toml"
    own.write_text(cfg.read_text().replace(listen, f"127.0.0.1:{_free_port()}"))
    in_process = Daemon(load_config(own))
    in_process.start()
    try:
        budget = stage_budget(in_process, budget_ids)
    finally:
        in_process.signals.stop.set()  # ends its camera probe before the camera closes
        in_process.stop()
    sock_path = tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(120)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*edge, "run", "--config", str(cfg)],
        env={**os.environ, "NOTIFY_SOCKET": str(sock_path)},
        stderr=open(tmp / "daemon.log", "wb"),  # noqa: SIM115
    )
    try:
        while b"READY=1" not in sock.recv(65536):
            pass
        ready_s = time.perf_counter() - t0
        rss_ready = _vm(proc.pid, "VmRSS")
        at_ready = _rollup(proc.pid)
        peak_ready = _vm(proc.pid, "VmHWM")
        _dump_smaps(proc.pid, "ready")
        frame = load_image(frame_path)
        frames = [frame] * 3
        refs = [template]
        pipeline.verify_burst(frames, refs)  # warm-up
        no_pad.verify_burst(frames, refs)
        direct, without_pad = [], []
        for _ in range(args.n):
            t = time.perf_counter()
            pipeline.verify_burst(frames, refs)
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            no_pad.verify_burst(frames, refs)
            without_pad.append(time.perf_counter() - t)
        request_json(listen, "POST", "/v1/verify", {"kpm_id": "nobody", "officer_id": "b"})
        via_api = []
        for i in range(args.n):
            t = time.perf_counter()
            code, answer = request_json(
                listen,
                "POST",
                "/v1/verify",
                {"kpm_id": f"KPM-{i:05d}", "officer_id": "bench"},
                timeout=300,
            )
            via_api.append(time.perf_counter() - t)
            assert code == 200 and answer["decision"] == "match", answer
        peak = _vm(proc.pid, "VmHWM")
        at_end = _rollup(proc.pid)
        _dump_smaps(proc.pid, "end")
    finally:
        proc.terminate()
        proc.wait(60)
    d, a = statistics.median(direct), statistics.median(via_api)
    w = statistics.median(without_pad)
    print(f"start to READY=1        {ready_s:8.2f} s")
    print(f"RSS at READY            {rss_ready / 2**20:8.1f} MiB")
    print(f"peak RSS (VmHWM)        {peak / 2**20:8.1f} MiB (by READY: {peak_ready / 2**20:.1f})")
    for label, r in (("at READY", at_ready), ("after the requests", at_end)):
        print(
            f"  {label:20} RSS {r['rss'] / 2**20:6.1f} MiB: anonymous {r['anon'] / 2**20:6.1f},"
            f" file-backed {r['file'] / 2**20:6.1f}"
        )
    print(f"pipeline without PAD    {w * 1000:8.1f} ms (median of {args.n}, burst of 3)")
    print(f"pipeline direct, burst3 {d * 1000:8.1f} ms (median of {args.n}, with PAD)")
    print(f"ratio with / without PAD{d / w:8.2f}")
    print(f"through the API, burst3 {a * 1000:8.1f} ms (median of {args.n}, signed + committed)")
    print(f"ratio API / direct      {a / d:8.2f}")
    ms = budget["ms"]
    print(
        f"stage budget, one verification in-process (median of {args.n}, burst of 3,"
        f" decisions {budget['decisions']}):"
    )
    for k in (*STAGES, "other"):
        print(f"  {k:12} {ms[k]:8.2f} ms  {ms[k] / ms['total']:6.1%}")
    print(f"  {'total':12} {ms['total']:8.2f} ms")
    print(f"frame {np.asarray(frame).shape[1]}x{np.asarray(frame).shape[0]}")


if __name__ == "__main__":
    main()
