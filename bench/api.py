"""The local API under many clients: idle connections, a burst of POSTs, status throughout.

Run by hand: `python -m bench.api [--idle 1000] [--concurrent 500] [--verify-ms 2] [--json]`.

One process, loopback only: the API server (edge.api.ApiServer with its default limits
and a backend whose verify sleeps --verify-ms), --idle connections that never send a
byte, then --concurrent clients that connect and POST /v1/verify at once, while a prober
asks GET /v1/status every 50 ms. Prints how the POSTs were answered (status line, resets,
silence), the status probes' latencies and the server process's thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import threading
import time
from typing import Any

from edge.api import ApiServer, request_json
from tests.support.daemon import burst_posts


class _Backend:
    def __init__(self, verify_s: float) -> None:
        self.verify_s = verify_s

    def verify(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        time.sleep(self.verify_s)
        return 200, {"decision": "match", "kpm_id": request.get("kpm_id")}

    def status(self) -> dict[str, Any]:
        return {"state": "ready"}

    def health(self) -> list[str]:
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--concurrent", type=int, default=500)
    ap.add_argument("--verify-ms", type=float, default=2.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not (0 <= args.idle <= 5000 and 1 <= args.concurrent <= 2000):
        ap.error("--idle 0..5000, --concurrent 1..2000 (be kind to the machine)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3 * (args.idle + args.concurrent) + 512
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, want), hard), hard))

    server = ApiServer("127.0.0.1:0", _Backend(args.verify_ms / 1000))
    server.start()
    host, _, port = server.address.rpartition(":")
    address = (host, int(port))
    idle = []
    probes: list[tuple[float, Any]] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                code: Any = request_json(server.address, "GET", "/v1/status", timeout=2)[0]
            except OSError as exc:
                code = type(exc).__name__
            probes.append((time.monotonic() - t0, code))
            stop.wait(0.05)

    try:
        for _ in range(args.idle):
            idle.append(socket.create_connection(address, timeout=10))
        threads_idle = len(os.listdir("/proc/self/task"))
        prober = threading.Thread(target=probe)
        prober.start()
        t0 = time.monotonic()
        counts = burst_posts(address, args.concurrent, 60.0)
        took = time.monotonic() - t0
        time.sleep(0.3)
        stop.set()
        prober.join()
    finally:
        stop.set()
        for s in idle:
            s.close()
        server.stop()
    lat = sorted(t for t, _ in probes)
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "idle": args.idle,
        "concurrent": args.concurrent,
        "verify_ms": args.verify_ms,
        "burst_s": round(took, 3),
        "posts": counts,
        "threads_with_idle": threads_idle,
        "status_probes": len(probes),
        "status_failed": sum(1 for _, c in probes if c != 200),
        "status_p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "status_max_ms": round(lat[-1] * 1000, 1) if lat else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>18}: {v}")


if __name__ == "__main__":
    main()
