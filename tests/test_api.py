"""The local HTTP API's protocol handling, over TCP and a Unix socket.

The backend here is a small recording object: the daemon's real backend is
exercised end to end in test_daemon_e2e.py.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from edge.api import ApiServer, request_json


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []

    def verify(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append(request)
        if request.get("kpm_id") == "boom":
            raise RuntimeError("kaboom")
        return 200, {"decision": "match", "kpm_id": request.get("kpm_id")}

    def status(self) -> dict[str, Any]:
        return {"state": "ready"}

    def health(self) -> list[str]:
        return self.problems


@pytest.fixture(params=["tcp", "unix"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    listen = "127.0.0.1:0" if request.param == "tcp" else f"unix:{tmp_path}/api.sock"
    backend = Recorder()
    srv = ApiServer(listen, backend, max_body=1024)
    srv.start()
    yield srv, backend
    srv.stop()


def test_verify_status_health(server: Any) -> None:
    srv, backend = server
    addr = srv.address
    code, body = request_json(addr, "POST", "/v1/verify", {"kpm_id": "K1", "officer_id": "o"})
    assert (code, body["decision"]) == (200, "match")
    assert backend.requests == [{"kpm_id": "K1", "officer_id": "o"}]
    assert request_json(addr, "GET", "/v1/status") == (200, {"state": "ready"})
    assert request_json(addr, "GET", "/v1/health") == (200, {"ok": True, "problems": []})
    backend.problems = ["camera silent 12s"]
    assert request_json(addr, "GET", "/v1/health")[0] == 503


def test_errors_are_json_not_crashes(server: Any) -> None:
    srv, _backend = server
    addr = srv.address
    assert request_json(addr, "GET", "/nope")[0] == 404
    assert request_json(addr, "POST", "/v1/other", {})[0] == 404
    code, body = request_json(addr, "POST", "/v1/verify", {"kpm_id": "boom"})
    assert code == 500 and "journal" in body["error"]
    code, body = request_json(addr, "POST", "/v1/verify", ["not", "an", "object"])  # type: ignore[arg-type]
    assert code == 400
    code, body = request_json(addr, "POST", "/v1/verify", {"x": "y" * 2000})
    assert code == 413
    # the server still answers after all of that
    assert request_json(addr, "GET", "/v1/status")[0] == 200


def test_malformed_body(tmp_path: Path) -> None:
    srv = ApiServer("127.0.0.1:0", Recorder())
    srv.start()
    try:
        host, _, port = srv.address.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", "/v1/verify", body=b"{not json", headers={"Content-Length": "9"})
        resp = conn.getresponse()
        assert resp.status == 400
        assert "not JSON" in json.loads(resp.read())["error"]
        conn.close()
    finally:
        srv.stop()
