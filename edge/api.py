"""The local verification API: HTTP/1.1 JSON on 127.0.0.1:PORT or a Unix socket.

    POST /v1/verify  {"kpm_id", "officer_id", ["programme", "period"]}  -> decision JSON
    GET  /v1/status  -> the kiosk status (same as `edge status --json`)
    GET  /v1/health  -> {"ok": bool, "problems": [...]} (200 or 503)
    GET  /  -> 302 /ui/;  GET /ui/... -> the kiosk screen's static files (edge/ui/static)
    /v1/session, /v1/kpm/<id>, /v1/scan, /v1/preview.jpg, /v1/guidance, /v1/ui/state
        -> the kiosk screen's endpoints (edge/ui/kiosk.py), when the backend has them

Only local clients (the kiosk screen, `edge verify`) are expected; nothing here
returns biometric data except the screen's small live preview JPEG. A POST /v1/verify
with `Authorization: Bearer <token>` is the screen's (officer from the session); one
without is the local CLI's (officer_id in the body), as before the screen existed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "ui" / "static"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}
UI_PATHS = (
    "/v1/session", "/v1/kpm/", "/v1/scan", "/v1/preview.jpg", "/v1/guidance", "/v1/progress",
    "/v1/ui/",
)  # fmt: skip


class ApiBackend(Protocol):
    def verify(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]: ...

    def status(self) -> dict[str, Any]: ...

    def health(self) -> list[str]: ...


class UiReply(Protocol):
    code: int
    body: dict[str, Any] | bytes
    content_type: str


class UiBackend(Protocol):
    """The kiosk screen's endpoints (edge.ui.kiosk.KioskUi via the daemon)."""

    def ui_handle(
        self, method: str, path: str, token: str | None, body: dict[str, Any]
    ) -> UiReply: ...


def static_file(path: str) -> tuple[bytes, str] | None:
    """The packaged file for a /ui/ path, or None (no path escapes the static folder)."""
    rel = path.split("?", 1)[0][len("/ui/") :] or "index.html"
    target = (STATIC_DIR / rel).resolve()
    if STATIC_DIR not in target.parents or not target.is_file():
        return None
    ctype = STATIC_TYPES.get(target.suffix)
    return (target.read_bytes(), ctype) if ctype else None


class _Handler(BaseHTTPRequestHandler):
    server_version = "bansos-edge"
    protocol_version = "HTTP/1.1"
    backend: ApiBackend
    max_body: int

    def address_string(self) -> str:  # Unix sockets have no client address
        return str(self.client_address[0]) if self.client_address else "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api %s " + format, self.address_string(), *args)

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, sort_keys=True).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _send_bytes(
        self, code: int, data: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[len("Bearer ") :].strip() or None if auth.startswith("Bearer ") else None

    def _ui(self, method: str, body: dict[str, Any]) -> bool:
        """Hand a screen endpoint to the backend; False when this is not one."""
        handle = getattr(self.backend, "ui_handle", None)
        is_ui = self.path.startswith(UI_PATHS) or (
            self.path == "/v1/verify" and self.headers.get("Authorization") is not None
        )
        if handle is None or not is_ui:
            return False
        try:
            reply = handle(method, self.path, self._token(), body)
        except Exception:
            log.exception("api: %s %s failed", method, self.path)
            self._send(500, {"error": "internal error; see the journal", "error_key": "internal"})
            return True
        if isinstance(reply.body, bytes):
            self._send_bytes(reply.code, reply.body, reply.content_type)
        else:
            self._send(reply.code, reply.body)
        return True

    def do_GET(self) -> None:
        try:
            if self.path == "/" or self.path == "/ui":
                self._send_bytes(302, b"", "text/plain", {"Location": "/ui/"})
            elif self.path.startswith("/ui/"):
                found = static_file(self.path)
                if found is None:
                    self._send(404, {"error": f"no such file: {self.path}"})
                else:
                    self._send_bytes(200, *found)
            elif self._ui("GET", {}):
                pass
            elif self.path == "/v1/status":
                self._send(200, self.backend.status())
            elif self.path == "/v1/health":
                problems = self.backend.health()
                self._send(503 if problems else 200, {"ok": not problems, "problems": problems})
            else:
                self._send(404, {"error": f"no such endpoint: GET {self.path}"})
        except Exception:
            log.exception("api: GET %s failed", self.path)
            self._send(500, {"error": "internal error; see the journal"})

    def do_DELETE(self) -> None:
        if not self._ui("DELETE", {}):
            self._send(404, {"error": f"no such endpoint: DELETE {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/v1/verify" and not self.path.startswith(UI_PATHS):
            self._send(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self._send(411, {"error": "Content-Length required"})
            return
        length = int(length_text)
        if length > self.max_body:
            self._send(413, {"error": f"body larger than {self.max_body} bytes"})
            self.close_connection = True
            return
        raw = self.rfile.read(length)
        try:
            request = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._send(400, {"error": f"body is not JSON: {exc}"})
            return
        if not isinstance(request, dict):
            self._send(400, {"error": "body must be a JSON object"})
            return
        if self._ui("POST", request):
            return
        if self.path != "/v1/verify":
            self._send(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        try:
            code, body = self.backend.verify(request)
        except Exception:
            log.exception("api: verification failed")
            code, body = 500, {"error": "internal error; see the journal"}
        self._send(code, body)


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ApiServer:
    """Serves the API in a background thread until stop()."""

    def __init__(self, listen: str, backend: ApiBackend, max_body: int = 65536) -> None:
        handler = type("Handler", (_Handler,), {"backend": backend, "max_body": max_body})
        self.listen = listen
        self._server: socketserver.BaseServer
        if listen.startswith("unix:"):
            path = Path(listen[len("unix:") :])
            if path.exists() and path.is_socket():
                path.unlink()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._server = _UnixHTTPServer(str(path), handler)
            os.chmod(path, 0o660)
            self.address = listen
        else:
            host, _, port = listen.rpartition(":")
            ThreadingHTTPServer.allow_reuse_address = True
            server = ThreadingHTTPServer((host, int(port)), handler)
            server.daemon_threads = True
            self._server = server
            bound = server.socket.getsockname()
            self.address = f"{bound[0]}:{bound[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="api", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("api listening on %s", self.address)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self.listen.startswith("unix:"):
            Path(self.listen[len("unix:") :]).unlink(missing_ok=True)


def request_json(
    listen: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    timeout: float = 60.0,
    token: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """A tiny client for the API over TCP or a Unix socket (used by `edge verify`/`status`);
    `token` is a kiosk-screen session."""
    import http.client

    conn: http.client.HTTPConnection
    if listen.startswith("unix:"):
        conn = _UnixConnection(listen[len("unix:") :], timeout)
    else:
        host, _, port = listen.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        try:
            parsed = json.loads(payload.decode("utf-8")) if payload else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = {"error": "daemon answered with non-JSON"}
        return resp.status, parsed
    finally:
        conn.close()


class _UnixConnection:
    """http.client.HTTPConnection over AF_UNIX."""

    def __new__(cls, path: str, timeout: float) -> Any:
        import http.client

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(path)
                self.sock = sock

        return Conn("localhost", timeout=timeout)
