"""The local verification API: HTTP/1.1 JSON on 127.0.0.1:PORT or a Unix socket.

    POST /v1/verify  {"kpm_id", "officer_id", ["programme", "period"]}  -> decision JSON
    GET  /v1/status  -> the kiosk status (same as `edge status --json`)
    GET  /v1/health  -> {"ok": bool, "problems": [...]} (200 or 503)
    GET  /  -> 302 /ui/;  GET /ui/... -> the kiosk screen's static files (edge/ui/static)
    the kiosk screen's endpoints (the one table in edge/ui/routes.py) -> edge/ui/kiosk.py,
        when the backend has them

Only local clients (the kiosk screen, `edge verify`) are expected; nothing here
returns biometric data except the screen's small live preview JPEG. A POST /v1/verify
with `Authorization: Bearer <token>` is the screen's (officer from the session); one
without is the local CLI's (officer_id in the body), as before the screen existed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import queue
import selectors
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from edge.ui.routes import is_screen_path

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "ui" / "static"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}


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


class BadPath(ValueError):
    """A request path no file can have (NUL or other control characters)."""


def static_file(path: str) -> tuple[bytes, str] | None:
    """The packaged file for a /ui/ path, or None (no path escapes the static folder).

    Raises BadPath for control characters (raw or %-encoded), which no file name has.
    """
    rel = unquote(path.split("?", 1)[0][len("/ui/") :]) or "index.html"
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        raise BadPath("path: control characters are not allowed")
    if len(rel) > 255:
        return None
    try:
        target = (STATIC_DIR / rel).resolve()
        if STATIC_DIR not in target.parents or not target.is_file():
            return None
    except (OSError, ValueError):
        return None
    ctype = STATIC_TYPES.get(target.suffix)
    return (target.read_bytes(), ctype) if ctype else None


class _Handler(BaseHTTPRequestHandler):
    server_version = "bansos-edge"
    protocol_version = "HTTP/1.1"
    # a request line that cannot be parsed still gets a status line (not an HTTP/0.9 body)
    default_request_version = "HTTP/1.1"
    backend: ApiBackend
    max_body: int

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's protocol errors (bad request line, headers) as JSON, then close."""
        self.close_connection = True
        self._send(code, {"error": message or self.responses.get(code, ("error",))[0]})

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
        is_ui = is_screen_path(self.path, self.headers.get("Authorization") is not None)
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
                try:
                    found = static_file(self.path)
                except BadPath as exc:
                    self._send(400, {"error": str(exc)})
                    return
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
        if self.path != "/v1/verify" and not is_screen_path(self.path, bearer=False):
            self._send(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._send(411, {"error": "Content-Length required"})
            return
        length_text = length_text.strip()
        if not (length_text.isascii() and length_text.isdigit() and len(length_text) <= 12):
            self._send(
                400,
                {"error": f"Content-Length: expected a number of bytes, got {length_text[:20]!r}"},
            )
            self.close_connection = True
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
        except ValueError as exc:  # e.g. a number of more than 4300 digits
            self._send(400, {"error": f"body is not JSON this API accepts: {exc}"})
            return
        except RecursionError:
            self._send(400, {"error": "body is not JSON this API accepts: nested too deeply"})
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


@dataclass(frozen=True)
class ApiLimits:
    """What one client, or many, may take from the API (see README "The local API").

    Idle connections cost a file descriptor and no thread: one poller thread holds them
    and reads each request (headers and body) without blocking; only a complete request
    reaches a worker. Screen reads (GET) and writes (POST/DELETE: verify, sign-in, which
    wait for the camera or scrypt) have separate fixed pools, so a queue of verifications
    never keeps /v1/status or /v1/health from answering.
    """

    workers: int = 3  # GET pool (status, health, static files, preview)
    write_workers: int = 2  # POST/DELETE pool (verify, sign-in, scan)
    queue: int = 256  # complete requests waiting per pool; beyond that 503 busy
    backlog: int = 512  # listen(2) backlog (the kernel caps it at net.core.somaxconn)
    max_connections: int = 2048  # open connections; the oldest idle one is closed first
    request_timeout_s: float = 10.0  # first byte to complete headers and body (slowloris)
    idle_timeout_s: float = 120.0  # a keep-alive connection with no request in progress
    send_timeout_s: float = 10.0  # writing one answer to a client that does not read
    max_header_bytes: int = 16384
    max_requests_per_connection: int = 1000


def _canned(code: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode("utf-8")
    head = (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
    )
    return head.encode("ascii") + body


_BUSY = _canned(503, "Service Unavailable", "busy: too many requests queued; try again")
_INTERNAL = _canned(500, "Internal Server Error", "internal error; see the journal")
_TIMEOUT = _canned(408, "Request Timeout", "request not complete in time")
_TOO_LARGE_HEAD = _canned(431, "Request Header Fields Too Large", "request headers too large")


@dataclass
class _Conn:
    sock: socket.socket
    address: Any
    since: float  # accepted, or last answer sent (idle clock)
    buf: bytearray = field(default_factory=bytearray)
    first_byte: float | None = None  # when the request in progress began (request clock)
    # answered and closed for writing: unread bytes are drained until the client closes,
    # so that it reads the answer rather than a reset (lingering close)
    linger_until: float | None = None
    served: int = 0


def _content_length(head: bytes) -> int | None:
    """The body length the poller must wait for; None when absent or not a plain number
    (the handler then answers 400/411 without reading a body)."""
    for line in head.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            text = value.strip()
            if text.isdigit() and len(text) <= 12:  # bytes.isdigit(): ASCII digits only
                return int(text)
            return None
    return None


LINGER_S = 2.0


def _bind(listen: str) -> tuple[socket.socket, str]:
    """A bound socket for `unix:PATH` (mode 0660, a stale socket file replaced) or
    `HOST:PORT` (port 0: any free one); returns it and the address it is bound to."""
    if listen.startswith("unix:"):
        path = Path(listen[len("unix:") :])
        if path.exists() and path.is_socket():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
        except OSError:
            sock.close()
            raise
        os.chmod(path, 0o660)
        return sock, listen
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()
    return sock, f"{bound[0]}:{bound[1]}"


class ApiServer:
    """Serves the API until stop(): one poller thread and two fixed worker pools."""

    def __init__(
        self,
        listen: str,
        backend: ApiBackend,
        max_body: int = 65536,
        limits: ApiLimits | None = None,
    ) -> None:
        self.handler: type[_Handler] = type(
            "Handler", (_Handler,), {"backend": backend, "max_body": max_body}
        )
        self.listen = listen
        self.max_body = max_body
        self.limits = limits or ApiLimits()
        self.sock, self.address = _bind(listen)
        self.sock.listen(self.limits.backlog)
        self.sock.setblocking(False)
        _raise_fd_limit(self.limits.max_connections + 256)
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._returned: queue.SimpleQueue[_Conn] = queue.SimpleQueue()
        self._conns: dict[int, _Conn] = {}  # fd -> connection, held by the poller
        self._busy = 0  # connections a worker holds now
        self._lock = threading.Lock()
        self._queues = {
            "read": queue.Queue[_Job | None](self.limits.queue),
            "write": queue.Queue[_Job | None](self.limits.queue),
        }
        self._threads = [threading.Thread(target=self._poll, name="api", daemon=True)]
        for pool, n in (("read", self.limits.workers), ("write", self.limits.write_workers)):
            for i in range(n):
                self._threads.append(
                    threading.Thread(
                        target=self._work, args=(pool,), name=f"api-{pool}-{i}", daemon=True
                    )
                )
        self.counters = {"accepted": 0, "evicted": 0, "timed_out": 0, "busy": 0}

    def start(self) -> None:
        for t in self._threads:
            t.start()
        log.info("api listening on %s", self.address)

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        for q in self._queues.values():
            for _ in range(self.limits.workers + self.limits.write_workers):
                try:
                    q.put_nowait(None)
                except queue.Full:
                    break
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout=5)
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()
        if self.listen.startswith("unix:"):
            Path(self.listen[len("unix:") :]).unlink(missing_ok=True)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns) + self._busy

    # -- poller ----------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _poll(self) -> None:
        sel = self._selector
        sel.register(self.sock, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        last_sweep = time.monotonic()
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.5):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._readable(key.data)
                now = time.monotonic()
                if now - last_sweep >= 0.5:
                    self._sweep(now)
                    last_sweep = now
        except Exception:
            log.exception("api: poller failed")
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            sel.close()

    def _accept(self) -> None:
        for _ in range(256):  # bounded: the loop comes back for the rest
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: shed the oldest idle one
                log.warning("api: accept failed: %s", exc)
                self._evict_idle()
                return
            sock.setblocking(False)
            self.counters["accepted"] += 1
            if self.open_connections >= self.limits.max_connections and not self._evict_idle():
                _send_quietly(sock, _BUSY)
                sock.close()
                continue
            conn = _Conn(sock, address, time.monotonic())
            with self._lock:
                self._conns[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _evict_idle(self) -> bool:
        """Close the connection idle the longest (no request in progress); False if none."""
        idle = [c for c in self._conns.values() if not c.buf]
        if not idle:
            return False
        self._close(min(idle, key=lambda c: c.since))
        self.counters["evicted"] += 1
        return True

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return
        while True:
            try:
                conn = self._returned.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                self._busy -= 1
                self._conns[conn.sock.fileno()] = conn
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)
            if conn.buf and conn.linger_until is None:  # a pipelined request already arrived
                self._dispatch_if_complete(conn)

    def _readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        if conn.linger_until is not None:
            return  # discarded
        if conn.first_byte is None:
            conn.first_byte = time.monotonic()
        conn.buf += data
        self._dispatch_if_complete(conn)

    def _dispatch_if_complete(self, conn: _Conn) -> None:
        try:
            split = _split_request(conn.buf, self.limits.max_header_bytes, self.max_body)
        except _HeadTooLarge:
            self._answer_and_close(conn, _TOO_LARGE_HEAD)
            return
        if split is None:
            return
        request, conn.buf, pool = split
        self._selector.unregister(conn.sock)
        with self._lock:
            self._conns.pop(conn.sock.fileno(), None)
            self._busy += 1
        conn.first_byte = None
        try:
            self._queues[pool].put_nowait(_Job(conn, request))
        except queue.Full:
            self.counters["busy"] += 1
            with self._lock:
                self._busy -= 1
            _send_quietly(conn.sock, _BUSY)
            conn.sock.close()

    def _answer_and_close(self, conn: _Conn, answer: bytes) -> None:
        _send_quietly(conn.sock, answer)
        self._close(conn)

    def _sweep(self, now: float) -> None:
        """Close connections past their request or idle deadline."""
        lim = self.limits
        for conn in list(self._conns.values()):
            if conn.linger_until is not None:
                if now > conn.linger_until:
                    self._close(conn)
            elif conn.first_byte is not None and now - conn.first_byte > lim.request_timeout_s:
                self.counters["timed_out"] += 1
                self._answer_and_close(conn, _TIMEOUT)
            elif conn.first_byte is None and now - conn.since > lim.idle_timeout_s:
                self._close(conn)

    def _close(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()

    # -- workers ---------------------------------------------------------------
    def _work(self, pool: str) -> None:
        q = self._queues[pool]
        while True:
            job = q.get()
            if job is None or self._stop.is_set():
                if isinstance(job, _Job):
                    job.conn.sock.close()
                return
            assert isinstance(job, _Job)
            keep = False
            try:
                keep = self._serve(job)
            except Exception:
                log.exception("api: worker failed")
            conn = job.conn
            if self._stop.is_set():
                with self._lock:
                    self._busy -= 1
                conn.sock.close()
                continue
            if not keep:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_WR)
                conn.linger_until = time.monotonic() + LINGER_S
                conn.buf.clear()
            conn.since = time.monotonic()
            self._returned.put(conn)
            self._wake()

    def _serve(self, job: _Job) -> bool:
        """Answer one complete request; True when the connection stays open."""
        return _serve_one(self.handler, self, job, self.limits)


@dataclass
class _Job:
    conn: _Conn
    request: bytes


class _HeadTooLarge(Exception):
    """The request head grew past the limit without ending."""


def _split_request(
    buf: bytearray, max_header_bytes: int, max_body: int
) -> tuple[bytes, bytearray, str] | None:
    """The first complete request in `buf`, the bytes after it and its pool ("read" for
    GET/HEAD, else "write"); None while incomplete. A body over `max_body` is not waited
    for (the handler answers 413 from the head)."""
    end = buf.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = buf.find(b"\n\n"), 2
    if end < 0:
        if len(buf) > max_header_bytes:
            raise _HeadTooLarge
        return None
    head = bytes(buf[:end])
    length = _content_length(head)
    total = end + sep + (length if length is not None and length <= max_body else 0)
    if len(buf) < total:
        return None
    pool = "read" if head[:4] in (b"GET ", b"HEAD") else "write"
    return bytes(buf[:total]), bytearray(buf[total:]), pool


def _serve_one(handler_cls: type[_Handler], server: Any, job: _Job, limits: ApiLimits) -> bool:
    """Run the stdlib handler on one buffered request over the connection's socket."""
    conn = job.conn
    conn.sock.setblocking(True)
    conn.sock.settimeout(limits.send_timeout_s)
    handler = object.__new__(handler_cls)
    handler.rfile = io.BytesIO(job.request)
    handler.wfile = socketserver._SocketWriter(conn.sock)  # type: ignore[attr-defined]
    handler.request = conn.sock
    handler.client_address = conn.address if isinstance(conn.address, tuple) else ()
    handler.server = server
    handler.close_connection = True
    try:
        handler.handle_one_request()
    except OSError:  # the client went away or stopped reading
        return False
    except Exception:  # a bug: answer 500 rather than close in silence
        log.exception("api: request failed")
        _send_quietly(conn.sock, _INTERNAL)
        return False
    conn.served += 1
    conn.sock.setblocking(False)
    return not handler.close_connection and conn.served < limits.max_requests_per_connection


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """A best-effort short answer from the poller (never blocks it)."""
    try:
        sock.setblocking(False)
        sock.send(data)
    except OSError:
        pass


def _raise_fd_limit(want: int) -> None:
    """Idle connections are file descriptors: lift the soft limit towards the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError) as exc:
        log.debug("api: cannot raise the open-file limit: %s", exc)


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
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
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
