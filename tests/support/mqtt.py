"""Real mosquitto for tests: a throw-away CA, certificates by CN and a Broker that can be killed.

Usage from a test module::

    from tests.support.mqtt import Broker, Pki, connect_client

    def test_x(broker: Broker, pki: Pki) -> None:
        tls = pki.client("kiosk-0123456789abcdef")       # ClientTls(ca, cert, key)
        c = connect_client(broker, tls)                   # paho v5 client, connected
        broker.kill9(); broker.start()                    # same port, same persistence

Everything lives in pytest's tmp dirs; the broker uses Debian's /usr/sbin/mosquitto with the
config and ACL rendered from deploy/mosquitto/*.template (so the tests exercise the shipped files).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.helpers import REPO, free_port

DEPLOY = REPO / "deploy" / "mosquitto"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HQ_IDENTITY = "hq.ingest"
# use_username_as_clientid makes the CN the client id, so two connections with one
# certificate take each other's session over: every HQ worker / probe needs its own CN.
HQ_EXTRA_IDENTITIES = ("hq.ops", "hq.ingest.2", "hq.ingest.3")
DEVICE_ID = "kiosk-0123456789abcdef"
# The broker's ACL knows each identity by kind (deploy/mosquitto/broker_acl.py); kiosks
# (CN kiosk-<16 hex>) are registered as their certificates are issued.
INGEST_IDENTITIES = ("hq.ingest", "hq.ingest.2", "hq.ingest.3", "hq.ingest-2")
ROSTER_IDENTITIES = ("hq.roster",)
MONITOR_IDENTITIES = ("hq.ops",)
# Tests only: registers kiosks issued after the broker started, through the plugin's
# control topic. The shipped config has no such identity (nobody may change the ACL live).
ADMIN_IDENTITY = "test.broker-admin"
CONTROL = "$CONTROL/dynamic-security/v1"
DYNSEC_PLUGIN = next(
    (
        str(p)
        for p in sorted(Path("/usr/lib").glob("**/mosquitto_dynamic_security.so"))
        if p.is_file()
    ),
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
)


def _load_broker_acl() -> Any:
    """deploy/mosquitto/broker_acl.py (a script, not a package module): the one ACL source."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("broker_acl", DEPLOY / "broker_acl.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("broker_acl", mod)
    spec.loader.exec_module(mod)
    return mod


broker_acl = _load_broker_acl()


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class ClientTls:
    """Paths a TLS client needs: the CA to trust, its own cert and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    cn: str


def safe_name(cn: str) -> str:
    """File stem for a CN that cannot collide ("hq.ingest" vs "hq_ingest" differ by the hash)."""
    stem = re.sub(r"[^A-Za-z0-9-]", "_", cn)[:40]
    return f"{stem}-{hashlib.sha256(cn.encode()).hexdigest()[:8]}"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class Pki:
    """A dedicated CA in `root` that issues a server cert and client certs (CN = identity)."""

    def __init__(self, root: Path, ca_cn: str = "bansos-edge test CA") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        now = dt.datetime.now(dt.UTC)
        self._not_before = now - dt.timedelta(days=1)
        self._not_after = now + dt.timedelta(days=30)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name(ca_cn))
            .issuer_name(_name(ca_cn))
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_file = root / "ca.crt"
        _write_cert(self.ca_file, self.ca_cert)
        _write_key(root / "ca.key", self.ca_key)
        self._server: ClientTls | None = None
        self._clients: dict[str, ClientTls] = {}
        # weak: a finished test's broker drops out once it is garbage
        self._listeners: list[weakref.WeakMethod[Callable[[str], None]]] = []

    def on_issue(self, fn: Callable[[str], None]) -> None:
        """Call `fn(cn)` (a bound method, held weakly) for every client certificate issued
        from now on: brokers register the new identity in their ACL."""
        with self._lock:
            self._listeners.append(weakref.WeakMethod(fn))  # type: ignore[arg-type]

    def forget(self, fn: Callable[[str], None]) -> None:
        with self._lock:
            self._listeners = [w for w in self._listeners if w() not in (None, fn)]

    def issued(self) -> list[str]:
        """The CNs of every client certificate issued so far."""
        with self._lock:
            return list(self._clients)

    def _issue(
        self,
        cn: str,
        stem: str,
        server: bool,
        ips: Sequence[str] = (),
        dns: Sequence[str] = (),
    ) -> ClientTls:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            alt: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            alt += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        cert_file = self.root / f"{stem}.crt"
        key_file = self.root / f"{stem}.key"
        _write_cert(cert_file, cert)
        _write_key(key_file, key)
        return ClientTls(self.ca_file, cert_file, key_file, cn)

    def server(self, extra_ips: Sequence[str] = ()) -> ClientTls:
        """The broker's certificate: 127.0.0.1, ::1, localhost, plus `extra_ips` (reissued if new)."""
        with self._lock:
            ips = ["127.0.0.1", "::1", *extra_ips]
            if self._server is None or extra_ips:
                self._server = self._issue(
                    "localhost",
                    "server" + ("-" + "-".join(extra_ips) if extra_ips else ""),
                    True,
                    ips=ips,
                    dns=["localhost"],
                )
            return self._server

    def client(self, cn: str) -> ClientTls:
        """A client certificate whose CN is `cn` (the MQTT username and client id); cached."""
        with self._lock:
            new = cn not in self._clients
            if new:
                self._clients[cn] = self._issue(cn, "client-" + safe_name(cn), False)
            tls = self._clients[cn]
            self._listeners = [w for w in self._listeners if w() is not None]
            listeners = [w() for w in self._listeners]
        if new:
            for fn in listeners:
                if fn is not None:
                    fn(cn)
        return tls


# ---------------------------------------------------------------- broker


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the test process dies (no orphan brokers in CI).

    Linux ties this to the thread that started the child: start brokers from a thread that
    outlives them (the test's main thread).
    """
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def render(template: Path, values: dict[str, Any]) -> str:
    """Fill `{name}` placeholders; a placeholder left unfilled is an error, not a silent gap."""
    text = template.read_text()
    missing = sorted(set(re.findall(r"\{([a-z_]+)\}", text)) - set(values))
    if missing:
        raise KeyError(f"{template}: no value for {missing}")
    for k, v in values.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def identity_kinds(cns: Sequence[str]) -> dict[str, list[str]]:
    """The HQ identities among `cns`, by kind (kiosk CNs and unknown names left out)."""
    kinds: dict[str, list[str]] = {"ingest": [], "roster": [], "monitor": []}
    for cn in dict.fromkeys(cns):
        if cn in ROSTER_IDENTITIES:
            kinds["roster"].append(cn)
        elif cn in MONITOR_IDENTITIES:
            kinds["monitor"].append(cn)
        elif cn in INGEST_IDENTITIES:
            kinds["ingest"].append(cn)
    return kinds


def _admin_parts() -> tuple[dict[str, Any], dict[str, Any]]:
    acls = [
        {"acltype": t, "topic": CONTROL + "/#", "priority": 0, "allow": True}
        for t in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]
    role = {"rolename": "test:admin", "acls": acls}
    return {"username": ADMIN_IDENTITY, "roles": [{"rolename": "test:admin"}]}, role


def render_dynsec(kiosks: Sequence[str], hq_cns: Sequence[str]) -> dict[str, Any]:
    """The shipped policy for these kiosks and HQ identities, plus the tests' admin client."""
    client, role = _admin_parts()
    return broker_acl.render(  # type: ignore[no-any-return]
        kiosks, identity_kinds(hq_cns), extra_clients=[client], extra_roles=[role]
    )


class Broker:
    """Debian's mosquitto with the deploy template, TLS + client certs, persistence in `root`.

    `start()` waits until the listener accepts a TLS handshake; `kill9()` is SIGKILL (no final
    persistence save); `stop()` is SIGTERM. The port stays the same across restarts.
    """

    def __init__(
        self,
        root: Path,
        pki: Pki,
        host: str = "127.0.0.1",
        port: int | None = None,
        hq_identity: str = HQ_IDENTITY,
        hq_identities: Sequence[str] = HQ_EXTRA_IDENTITIES,
        autosave_interval: int | None = None,
        netns: str | None = None,
    ) -> None:
        self.root = root
        self.pki = pki
        self.host = host
        self.port = port or free_port(host if netns is None else "127.0.0.1")
        self.hq_identity = hq_identity
        self.netns = netns
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        root.mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        self.log_file = root / "mosquitto.log"
        self.conf_file = root / "mosquitto.conf"
        self.dynsec_file = root / "dynamic-security.json"
        server = pki.server(extra_ips=[] if host in ("127.0.0.1", "localhost") else [host])
        self.hq_identities = list(dict.fromkeys([hq_identity, *hq_identities]))
        hq_cns = [*self.hq_identities, *INGEST_IDENTITIES, *ROSTER_IDENTITIES, *MONITOR_IDENTITIES]
        kiosks = [cn for cn in pki.issued() if broker_acl.KIOSK_ID.match(cn)]
        self._acl_lock = threading.Lock()
        self.dynsec_file.write_text(json.dumps(render_dynsec(kiosks, hq_cns), indent=1))
        pki.on_issue(self.register)
        conf = render(
            DEPLOY / "mosquitto.conf.template",
            {
                "persistence_dir": root / "data",
                "log_dest": f"file {self.log_file}",
                "port": self.port,
                "bind_address": host,
                "ca_file": pki.ca_file,
                "cert_file": server.cert_file,
                "key_file": server.key_file,
                "dynsec_plugin": DYNSEC_PLUGIN,
                "dynsec_file": self.dynsec_file,
            },
        )
        if autosave_interval is not None:
            conf = re.sub(
                r"^autosave_interval .*$",
                f"autosave_interval {autosave_interval}",
                conf,
                flags=re.M,
            )
        if os.geteuid() == 0:
            # mosquitto drops root to user "mosquitto", who cannot read pytest's tmp dirs.
            conf = "user root\n" + conf
        self.conf_file.write_text(conf)

    # -- the ACL

    def register(self, cn: str) -> None:
        """Make a kiosk certificate issued after this broker was set up known to its ACL.

        Running: through the plugin's control topic (the plugin saves its file). Stopped:
        straight into the file it loads at start.
        """
        if not broker_acl.KIOSK_ID.match(cn):
            return
        role = broker_acl.kiosk_role(cn)
        with self._acl_lock:
            if not self.dynsec_file.exists():  # a finished test's broker
                return
            if not self.running:
                doc = json.loads(self.dynsec_file.read_text())
                if all(c.get("username") != cn for c in doc["clients"]):
                    doc["roles"].append(role)
                    doc["clients"].append(
                        {"username": cn, "roles": [{"rolename": role["rolename"]}]}
                    )
                    self.dynsec_file.write_text(json.dumps(doc, indent=1))
                return
            commands: list[dict[str, Any]] = [
                {"command": "createRole", "rolename": role["rolename"]}
            ]
            commands += [
                {"command": "addRoleACL", "rolename": role["rolename"], **acl}
                for acl in role["acls"]
            ]
            commands.append(
                {
                    "command": "createClient",
                    "username": cn,
                    "roles": [{"rolename": role["rolename"]}],
                }
            )
            self._control(commands)

    def _control(self, commands: list[dict[str, Any]], timeout: float = 20.0) -> None:
        got: list[dict[str, Any]] = []
        done = threading.Event()
        c = connect_client(self, self.pki.client(ADMIN_IDENTITY))
        try:

            def on_message(_c: Any, _u: Any, msg: Any) -> None:
                got.append(json.loads(msg.payload))
                done.set()

            subscribed = threading.Event()
            c.on_message = on_message
            c.on_subscribe = lambda *_a: subscribed.set()
            c.subscribe(CONTROL + "/response", qos=1)
            if not subscribed.wait(timeout):
                raise TimeoutError("dynamic-security: no SUBACK for the control response topic")
            c.publish(CONTROL, json.dumps({"commands": commands}), qos=1)
            if not done.wait(timeout):
                raise TimeoutError(f"dynamic-security: no answer to {commands[0]['command']}")
        finally:
            c.disconnect()
            c.loop_stop()
        errors = [r for r in got[0].get("responses", []) if r.get("error")]
        if errors:
            raise RuntimeError(f"dynamic-security refused: {errors}")

    # -- lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Start mosquitto and wait until it completes a TLS handshake on the port."""
        if self.running:
            return
        cmd = [MOSQUITTO, "-c", str(self.conf_file)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        log_from = self._log_size()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                said = err + self._log_since(log_from)  # mosquitto logs the bind error to its file
                if "Address already in use" in said and time.monotonic() + 1.0 < deadline:
                    # a restart on our port can find it briefly taken: a client retrying
                    # against the downed broker may get this very port as its source port
                    # and connect to itself (TCP self-connect) until paho drops it
                    time.sleep(0.5)
                    log_from = self._log_size()
                    self.proc = subprocess.Popen(
                        cmd,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        start_new_session=True,
                        preexec_fn=_die_with_parent,
                    )
                    continue
                raise RuntimeError(
                    f"mosquitto exited {self.proc.returncode}: {err}\n{self.log_tail()}"
                )
            try:
                self._probe()
                return
            except OSError as e:
                last = e
                time.sleep(0.05)
        self.kill9()
        raise TimeoutError(f"mosquitto not ready on {self.host}:{self.port}: {last}")

    def _probe(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_file))
        ctx.check_hostname = False
        probe = self.pki.client(self.hq_identity)
        ctx.load_cert_chain(str(probe.cert_file), str(probe.key_file))
        with (
            socket.create_connection((self.host, self.port), timeout=2) as raw,
            ctx.wrap_socket(raw) as s,
        ):
            s.do_handshake()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the broker (whatever was not autosaved is lost, like a power cut)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (mosquitto saves persistence on the way out); SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self, hard: bool = True) -> None:
        """Kill (-9 when `hard`) and start again on the same port with the same persistence."""
        if hard:
            self.kill9()
        else:
            self.stop()
        self.start()

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill9()


# ---------------------------------------------------------------- paho helpers


def connect_client(
    broker: Broker,
    tls: ClientTls,
    client_id: str | None = None,
    clean_start: bool = True,
    session_expiry: int = 0,
    timeout: float = 20.0,
    port: int | None = None,
) -> Any:
    """A connected paho-mqtt 2.x MQTTv5 client (loop running) or an exception saying why not.

    `port` overrides the broker's (e.g. to go through a delaying proxy).
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id if client_id is not None else tls.cn,
        protocol=mqtt.MQTTv5,
    )
    c.tls_set(ca_certs=str(tls.ca_file), certfile=str(tls.cert_file), keyfile=str(tls.key_file))
    done = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        result["rc"] = rc
        result["session_present"] = bool(getattr(flags, "session_present", False))
        done.set()

    def on_disconnect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        result.setdefault("rc", rc)
        done.set()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    c.connect(
        broker.host, port or broker.port, keepalive=30, clean_start=clean_start, properties=props
    )
    c.loop_start()
    if not done.wait(timeout) or result.get("rc") is None or result["rc"].is_failure:
        c.loop_stop()
        with contextlib.suppress(Exception):
            c.disconnect()
        raise ConnectionError(f"MQTT connect as {tls.cn!r} failed: {result.get('rc')}")
    c.on_connect = None
    c.on_disconnect = None
    c.user_data_set({"session_present": result["session_present"]})
    return c


def suback(client: Any, topic: str) -> str:
    """The broker's answer to one SUBSCRIBE, as paho names it ('Granted QoS 1', ...)."""
    got: list[str] = []
    done = threading.Event()

    def on_subscribe(_c: Any, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
        got.append(str(codes[0]))
        done.set()

    client.on_subscribe = on_subscribe
    client.subscribe(topic, qos=1)
    assert done.wait(20), "no SUBACK"
    return got[0]


def puback(client: Any, topic: str, payload: bytes = b"{}", retain: bool = False) -> int:
    """The PUBACK reason code of one QoS 1 publish (0 success, 16 no subscribers, 135 denied)."""
    codes: list[int] = []
    done = threading.Event()

    def on_publish(_c: Any, _u: Any, _mid: int, rc: Any, _p: Any) -> None:
        codes.append(int(rc.value))
        done.set()

    client.on_publish = on_publish
    client.publish(topic, payload, qos=1, retain=retain)
    assert done.wait(20), "no PUBACK"
    return codes[0]


# ---------------------------------------------------------------- pytest fixtures


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One test CA per session (certificates are cheap but not free on a Pi-class CI)."""
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    """A started broker on a free loopback port; killed at the end of the test."""
    b = Broker(tmp_path / "broker", pki)
    b.start()
    try:
        yield b
    finally:
        b.kill9()
        pki.forget(b.register)
