"""The fleet playbooks: lint, syntax, and real runs against Debian bookworm roots.

site.yml runs twice through the chroot connection against a kiosk root and a broker root
made by debootstrap (the second run must change nothing); then the roots are inspected,
the broker is started from its root to prove TLS, ACL and CRL, and the day-2 playbooks
(upgrade with rollback, rotate-cert, revoke) run the same way. Services are not started
in a chroot (kiosk_manage_services / broker_manage_services false): units are installed
and enabled only; the officers' screen is the exception: the installed unit's cage and
Chromium run on wlroots' headless output against a stand-in page (about 5 s). Runs as root
(chroot). 6 min 45 s measured on 2 shared cores (debootstrap 1 min, site.yml 2 min 16 s
with Chromium then 1 min 7 s, screen and day-2 about 2 min); debootstrap and apt need the
Debian mirror that the host's apt uses, and fail the test when it is unreachable.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from edge.ui.officers import verify_pin
from tests.ansible_chroot import (
    clone_root,
    debootstrap,
    in_root,
    kernel_mounts,
    mounts_under,
    play_recap,
    prepare_image,
    unmount_all,
)
from tests.support.helpers import free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = REPO / "ansible"
EXAMPLE_INVENTORY = ANSIBLE_DIR / "inventory" / "example"
VENV_BIN = Path(sys.executable).parent
EXAMPLE_VAULT_PASSWORD = "change-me-example-only\n"
PLAYBOOKS = ["site.yml", "rotate-cert.yml", "revoke.yml", "upgrade.yml"]
KIOSK = "van-test-01"
BROKER = "broker-test-1"
STATE = "/var/lib/bansos-edge"
TLS = "/etc/bansos-edge/tls"
SCREEN_USER = "bansos-screen"
UI_URL = "http://127.0.0.1:8470/ui/"
OFFICERS = "/etc/bansos-edge/officers.toml"
# The example inventory's officers (group_vars/kiosks.yml) and their example PINs (vault).
EXAMPLE_OFFICERS = {
    "officer-007": ("Siti Rahma", "BADGE-7F3A9C", "246810"),
    "officer-012": ("Yohanes Bria", None, "135790"),
}

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]  # debootstrapped roots, 7-9 min


def _env(tmp: Path) -> dict[str, str]:
    vault = tmp / "vault-pass"
    if not vault.exists():
        vault.write_text(EXAMPLE_VAULT_PASSWORD, encoding="ascii")
        vault.chmod(0o600)
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_VAULT_PASSWORD_FILE": str(vault),
        "ANSIBLE_HOME": str(tmp / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "PY_COLORS": "0",
    }


@dataclass
class Fleet:
    """A test fleet: a controller (this process's venv), a broker root and a kiosk root."""

    tmp: Path
    inventory: Path
    extra_vars: Path
    kiosk: Path
    broker: Path
    port: int
    timings: dict[str, float]

    def play(
        self, playbook: str, *args: str, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        proc = subprocess.run(
            [
                str(VENV_BIN / "ansible-playbook"),
                "-i",
                str(self.inventory / "hosts.yml"),
                "-e",
                f"@{self.extra_vars}",
                playbook,
                *args,
            ],
            cwd=ANSIBLE_DIR,
            env=_env(self.tmp),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        n = len(self.timings) + 1
        self.timings[f"{n:02d} {' '.join([playbook, *args])}"] = time.monotonic() - started
        (self.tmp / "logs").mkdir(exist_ok=True)
        log = self.tmp / "logs" / f"{n:02d}-{playbook}.log"
        log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
        return proc

    @property
    def ca_dir(self) -> Path:
        return self.inventory / "fleet-ca"

    @property
    def registry(self) -> dict[str, dict[str, object]]:
        data: dict[str, dict[str, object]] = json.loads(
            (self.inventory / "registry" / "devices.json").read_text("utf-8")
        )
        return data

    def device_id(self) -> str:
        out = in_root(self.kiosk, "/opt/bansos-edge/venv/bin/edge", "keys", "show", "--json")
        assert out.returncode == 0, out.stderr
        return str(json.loads(out.stdout)["device_id"])


def _must_pass(proc: subprocess.CompletedProcess[str], what: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


@pytest.fixture(scope="session")
def debian_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One minbase bookworm root per test session (python3 for Ansible's modules).

    BANSOS_TEST_DEBIAN_ROOT names an already made root to copy from (for development).
    """
    cached = os.environ.get("BANSOS_TEST_DEBIAN_ROOT")
    if cached:
        yield Path(cached)
        return
    base = tmp_path_factory.mktemp("debian") / "base"
    try:
        seconds = debootstrap(base, include=["python3", "python3-apt"])
        print(f"debootstrap bookworm minbase: {seconds:.0f} s")
        yield base
    finally:
        unmount_all(base)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, debian_base: Path) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    kiosk = clone_root(debian_base, tmp / "kiosk-root")
    broker = clone_root(debian_base, tmp / "broker-root")
    for root in (kiosk, broker):
        prepare_image(root)
    # A Raspberry Pi boot partition as Raspberry Pi OS ships it.
    (kiosk / "boot/firmware").mkdir(parents=True)
    (kiosk / "boot/firmware/config.txt").write_text("[all]\n#camera_auto_detect=0\n", "ascii")
    (kiosk / "boot/firmware/cmdline.txt").write_text(
        "console=serial0,115200 console=tty1 root=PARTUUID=0-02 rootwait\n", "ascii"
    )

    inventory = tmp / "inventory"
    shutil.copytree(EXAMPLE_INVENTORY / "group_vars", inventory / "group_vars")
    chroot = {
        "ansible_connection": "community.general.chroot",
        "ansible_become": False,
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    hosts = {
        "all": {
            "children": {
                "controller": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                        }
                    }
                },
                "brokers": {"hosts": {BROKER: {**chroot, "ansible_host": str(broker)}}},
                "kiosks": {
                    "children": {"vans": {"hosts": {KIOSK: {**chroot, "ansible_host": str(kiosk)}}}}
                },
                "region_jateng": {"hosts": {KIOSK: None}},
            }
        }
    }
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts), "utf-8")
    port = free_port()
    extra = {
        "kiosk_manage_services": False,
        "broker_manage_services": False,
        "kiosk_extra_packages": [],
        "kiosk_camera_backend": "replay",
        "bansos_wheel_arch": platform.machine(),
        "bansos_wheelhouse_root": str(tmp / "wheelhouse"),
        "bansos_broker_host": "localhost",
        "bansos_broker_port": port,
        "broker_log_dest": "stderr",
        # Build with this venv's setuptools and wheel when it can (faster, no index).
        "wheelhouse_build_isolation": importlib.util.find_spec("wheel") is None,
    }
    extra_vars = tmp / "test-vars.yml"
    extra_vars.write_text(yaml.safe_dump(extra), "utf-8")
    fleet = Fleet(tmp, inventory, extra_vars, kiosk, broker, port, {})
    try:
        yield fleet
    finally:
        for name, seconds in fleet.timings.items():
            print(f"ansible-playbook {name}: {seconds:.0f} s")
        for root in (kiosk, broker):
            unmount_all(root)
            assert mounts_under(root) == [], f"mounts left under {root}"


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _crl_serials(path: Path) -> set[int]:
    crl = x509.load_pem_x509_crl(path.read_bytes())
    return {entry.serial_number for entry in crl}


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


# --- static checks --------------------------------------------------------------------


def test_ansible_lint_production_profile_is_clean(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "--profile", "production", "--offline"],
        cwd=ANSIBLE_DIR,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = _must_pass(proc, "ansible-lint")
    assert "Profile 'production' was required, and it passed" in out
    assert "0 failure(s), 0 warning(s)" in out


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(playbook: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "--syntax-check", playbook],
        cwd=ANSIBLE_DIR,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    _must_pass(proc, f"syntax check of {playbook}")


# --- site.yml against real Debian roots -----------------------------------------------


def test_site_converges_then_changes_nothing(fleet: Fleet) -> None:
    first = play_recap(_must_pass(fleet.play("site.yml"), "first site.yml run"))
    assert first[KIOSK].changed > 10 and first[BROKER].changed > 5, first
    second_out = _must_pass(fleet.play("site.yml"), "second site.yml run")
    second = play_recap(second_out)
    assert all(r.changed == 0 and r.failed == 0 for r in second.values()), second_out[-6000:]


def test_kiosk_root_is_provisioned(fleet: Fleet) -> None:
    root = fleet.kiosk
    user = in_root(root, "getent", "passwd", "bansos-edge")
    assert user.returncode == 0 and user.stdout.split(":")[5] == STATE, user
    groups = in_root(root, "id", "-nG", "bansos-edge").stdout.split()
    assert {"video", "dialout"} <= set(groups)

    key = root / STATE.lstrip("/") / "device.key"
    assert key.stat().st_mode & 0o777 == 0o600
    owner = in_root(root, "stat", "-c", "%U", f"/{key.relative_to(root)}").stdout.strip()
    assert owner == "bansos-edge"
    tls_key = root / TLS.lstrip("/") / "client.key"
    assert tls_key.stat().st_mode & 0o777 == 0o600

    check = in_root(root, "/opt/bansos-edge/venv/bin/edge", "config", "check")
    assert check.returncode == 0 and "OK" in check.stdout, check
    config = (root / "etc/bansos-edge/edge.toml").read_text("utf-8")
    assert f"port = {fleet.port}" in config and 'backend = "replay"' in config

    verify = in_root(root, "systemd-analyze", "verify", "/etc/systemd/system/bansos-edge.service")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    wants = root / "etc/systemd/system/multi-user.target.wants/bansos-edge.service"
    assert wants.is_symlink()

    boot = (root / "boot/firmware/config.txt").read_text("ascii")
    assert "camera_auto_detect=1" in boot and "enable_uart=1" in boot
    assert "console=serial0" not in (root / "boot/firmware/cmdline.txt").read_text("ascii")
    assert 'DEVICES="/dev/ttyUSB0"' in (root / "etc/default/gpsd").read_text("ascii")
    assert "refclock SHM 0" in (root / "etc/chrony/conf.d/bansos-edge.conf").read_text("ascii")
    journald = (root / "etc/systemd/journald.conf.d/bansos-edge.conf").read_text("ascii")
    assert "Storage=persistent" in journald
    assert os.readlink(root / "etc/localtime").endswith("Asia/Jakarta")


def _unit(text: str) -> dict[str, list[str]]:
    """A systemd unit's `Section.Key` -> values (keys may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(f"{section}.{key}", []).append(value)
    return out


def _owner(root: Path, path: str) -> tuple[str, str, str]:
    """(user, group, octal mode) of a path inside the root, by the root's own names."""
    user, group, mode = in_root(root, "stat", "-c", "%U %G %a", path).stdout.split()
    return user, group, mode


def test_kiosk_screen_is_provisioned(fleet: Fleet) -> None:
    root = fleet.kiosk
    user = in_root(root, "getent", "passwd", SCREEN_USER).stdout.split(":")
    assert len(user) == 7 and user[2] != "0" and user[6].strip() == "/usr/sbin/nologin", user
    groups = set(in_root(root, "id", "-nG", SCREEN_USER).stdout.split())
    assert {"video", "render", "input"} <= groups and "bansos-edge" not in groups, groups
    assert _owner(root, user[5]) == (SCREEN_USER, SCREEN_USER, "700")
    packages = ["chromium", "chromium-sandbox", "cage", "xwayland"]
    installed = in_root(root, "dpkg-query", "-W", "-f", "${Status}\n", *packages)
    assert installed.stdout.count("install ok installed") == len(packages), installed

    text = (root / "etc/systemd/system/kiosk-display.service").read_text("utf-8")
    unit = _unit(text)
    start = unit["Service.ExecStart"][0].split()
    assert start[:3] == ["/usr/bin/cage", "-d", "--"] and start[3] == "/usr/bin/chromium"
    assert start[-1] == UI_URL and "--kiosk" in start and "--incognito" in start, start
    assert "bansos-edge.service" in unit["Unit.After"][0].split()
    assert "bansos-edge.service" in unit["Unit.Wants"][0].split()
    assert unit["Service.User"] == [SCREEN_USER] and unit["Service.TTYPath"] == ["/dev/tty1"]
    assert unit["Service.Restart"] == ["always"]
    wait = unit["Service.ExecStartPre"][0].split()
    assert wait[0] == "/usr/bin/curl" and wait[-1] == UI_URL and "--fail" in wait, wait
    for exe in (start[0], start[3], wait[0]):
        assert (root / exe.lstrip("/")).exists(), f"{exe} is not in the kiosk root"
    verify = in_root(root, "systemd-analyze", "verify", "/etc/systemd/system/kiosk-display.service")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (root / "etc/systemd/system/multi-user.target.wants/kiosk-display.service").is_symlink()
    assert "pam_systemd.so" in (root / "etc/pam.d/kiosk-display").read_text("ascii")
    cmdline = (root / "boot/firmware/cmdline.txt").read_text("ascii")
    assert cmdline.count("consoleblank=0") == 1 and cmdline.endswith("consoleblank=0\n"), cmdline

    policy = json.loads(
        (root / "etc/chromium/policies/managed/bansos-kiosk.json").read_text("utf-8")
    )
    assert policy["URLBlocklist"] == ["*"] and policy["URLAllowlist"] == ["http://127.0.0.1:8470/"]
    assert policy["DownloadRestrictions"] == 3 and policy["DeveloperToolsAvailability"] == 2
    assert policy["TranslateEnabled"] is False and policy["PasswordManagerEnabled"] is False
    assert policy["PrintingEnabled"] is False


def test_kiosk_officers_file_and_ui_config(fleet: Fleet) -> None:
    root = fleet.kiosk
    assert _owner(root, OFFICERS) == ("root", "bansos-edge", "640")
    text = (root / OFFICERS.lstrip("/")).read_text("utf-8")
    assert (
        '[[officer]]\nid = "officer-007"\nname = "Siti Rahma"\npin_hash = "scrypt$16384$8$1$'
        in text
    )
    officers = {o["id"]: o for o in tomllib.loads(text)["officer"]}
    assert set(officers) == set(EXAMPLE_OFFICERS)
    for oid, (name, badge, pin) in EXAMPLE_OFFICERS.items():
        assert officers[oid]["name"] == name and officers[oid].get("badge") == badge
        # The vaulted hash is the real one: the example PIN opens it, another does not.
        assert verify_pin(pin, officers[oid]["pin_hash"]) and not verify_pin(
            "0000", officers[oid]["pin_hash"]
        )
    assert not any(pin in text for _, _, pin in EXAMPLE_OFFICERS.values())
    # Needs the daemon's [ui] config section (kiosk_ui_config, default true).
    ui = tomllib.loads((root / "etc/bansos-edge/edge.toml").read_text("utf-8"))["ui"]
    assert ui == {
        "officers_file": OFFICERS,
        "max_attempts": 3,
        "pin_lockout_after": 3,
        "lockout_s": 300,
        "session_idle_s": 600,
        "language": "id",
    }


def _page_server(port: int, seen: list[str], body: str) -> ThreadingHTTPServer:
    """A stand-in for the daemon's page on 127.0.0.1:`port` that records the paths asked."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Page)
    except OSError as exc:
        raise AssertionError(
            f"127.0.0.1:{port} is in use ({exc}): the screen test needs it"
        ) from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_screen_unit_opens_the_page_in_real_chromium(fleet: Fleet) -> None:
    """The installed unit's own ExecStart (cage, Chromium, policy) on a headless output."""
    root = fleet.kiosk
    argv = _unit((root / "etc/systemd/system/kiosk-display.service").read_text("utf-8"))[
        "Service.ExecStart"
    ][0].split()
    uid, gid = in_root(root, "getent", "passwd", SCREEN_USER).stdout.split(":")[2:4]
    runtime = root / "tmp/screen-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    os.chown(runtime, int(uid), int(gid))
    page: list[str] = []
    elsewhere: list[str] = []
    other = free_port()
    # The page frames another local address: the managed policy must block it.
    servers = [
        _page_server(8470, page, f'<iframe src="http://127.0.0.1:{other}/blocked"></iframe>'),
        _page_server(other, elsewhere, "not allowed"),
    ]
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/var/lib/bansos-screen",
        "XDG_RUNTIME_DIR": "/tmp/screen-runtime",
        "WLR_BACKENDS": "headless",
        "WLR_LIBINPUT_NO_DEVICES": "1",
        "WLR_RENDERER": "pixman",
    }
    log = fleet.tmp / "screen.log"
    try:
        with kernel_mounts(root), log.open("w") as out:
            screen = subprocess.Popen(
                ["chroot", f"--userspec={uid}:{gid}", str(root), *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                wait_for(lambda: "/ui/" in page or screen.poll() is not None, 90, "the page")
                time.sleep(3)  # time for the framed address to be asked, were it allowed
            finally:
                alive = screen.poll() is None
                os.killpg(screen.pid, signal.SIGTERM)
                try:
                    screen.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(screen.pid, signal.SIGKILL)
                    screen.wait()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    output = log.read_text("utf-8", errors="replace")[-4000:]
    assert alive and "/ui/" in page, f"cage/Chromium did not open {UI_URL}:\n{output}"
    assert elsewhere == [], f"the policy let Chromium open 127.0.0.1:{other}: {elsewhere}"


def test_bad_officer_is_refused_with_its_name(fleet: Fleet) -> None:
    before = (fleet.kiosk / OFFICERS.lstrip("/")).read_bytes()
    # A PIN pasted where its hash belongs: refused, and never printed.
    bad = {"kiosk_officers": [{"id": "officer-099", "name": "Budi", "pin_hash": "864213"}]}
    proc = fleet.play(
        "site.yml",
        "--limit",
        f"{KIOSK},controller",
        "--tags",
        "kiosk_config",
        "-e",
        json.dumps(bad),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "kiosk_officers[0] (officer-099): pin_hash: expected scrypt" in out, out[-3000:]
    assert "edge officer hash-pin" in out and "864213" not in out, out[-3000:]
    assert "Traceback" not in out
    assert (fleet.kiosk / OFFICERS.lstrip("/")).read_bytes() == before


def test_screen_can_be_turned_off_and_on_again(fleet: Fleet) -> None:
    wants = fleet.kiosk / "etc/systemd/system/multi-user.target.wants/kiosk-display.service"
    limit = ["--limit", f"{KIOSK},controller", "--tags", "kiosk_display"]
    off = fleet.play("site.yml", *limit, "-e", "kiosk_display_enabled=false")
    assert play_recap(_must_pass(off, "screen off"))[KIOSK].changed == 1
    assert not wants.exists() and not wants.is_symlink()
    on = fleet.play("site.yml", *limit)
    assert play_recap(_must_pass(on, "screen on"))[KIOSK].changed == 1
    assert wants.is_symlink()


def test_device_identity_reaches_the_registry_and_the_certificate(fleet: Fleet) -> None:
    shown = in_root(fleet.kiosk, "/opt/bansos-edge/venv/bin/edge", "keys", "show", "--json")
    ident = json.loads(shown.stdout)
    entry = fleet.registry[ident["device_id"]]
    assert entry["public_key"] == ident["public_key"]
    assert entry["host"] == KIOSK and entry["kind"] == "van" and entry["region"] == "jateng"
    assert entry["revoked"] is False

    cert = _cert(fleet.kiosk / TLS.lstrip("/") / "client.crt")
    ca = _cert(fleet.ca_dir / "ca.crt")
    assert _cn(cert) == ident["device_id"]
    cert.verify_directly_issued_by(ca)
    # The CA key stays on the controller, encrypted; the kiosk only has the CA certificate.
    assert b"ENCRYPTED" in (fleet.ca_dir / "ca.key").read_bytes()
    assert not list(fleet.kiosk.glob("etc/bansos-edge/tls/ca.key"))


# --- the broker, started from its root -------------------------------------------------


class Broker:
    """mosquitto from the broker root, run under chroot for the duration of a check."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        run_dir = fleet.broker / "run/mosquitto"
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, *self._mosquitto_ids())
        self.proc = subprocess.Popen(
            [
                "chroot",
                str(fleet.broker),
                "/usr/sbin/mosquitto",
                "-c",
                "/etc/mosquitto/mosquitto.conf",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"mosquitto exited: {self.proc.stdout and self.proc.stdout.read()}"
                )
            try:
                socket.create_connection(("127.0.0.1", fleet.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("mosquitto did not listen within 30 s")

    def _mosquitto_ids(self) -> tuple[int, int]:
        line = in_root(self.fleet.broker, "getent", "passwd", "mosquitto").stdout.split(":")
        return int(line[2]), int(line[3])

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""


def _tls_client(fleet: Fleet, cert: Path, key: Path) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(fleet.ca_dir / "ca.crt"))
    ctx.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection(("localhost", fleet.port), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    return tls


def _kiosk_can_connect(fleet: Fleet) -> bool:
    """Does the broker keep a TLS session with the kiosk's certificate (it checks the CRL)?"""
    tls_dir = fleet.kiosk / TLS.lstrip("/")
    try:
        tls = _tls_client(fleet, tls_dir / "client.crt", tls_dir / "client.key")
    except (ssl.SSLError, ConnectionResetError):
        return False
    try:
        # TLS 1.3 reports a refused client certificate only at the first read.
        tls.sendall(bytes([0x10, 0x0D, 0, 4]) + b"MQTT" + bytes([5, 2, 0, 30, 0, 0, 0]))
        return tls.recv(1)[:1] == b"\x20"  # CONNACK
    except (ssl.SSLError, ConnectionResetError, TimeoutError):
        return False
    finally:
        tls.close()


def _mqtt_roundtrip(fleet: Fleet, device_id: str) -> tuple[list[str], int, list[str]]:
    """Kiosk publishes to its own and to another kiosk's topic and tries to join HQ's
    shared group (SUBACK answers returned); HQ ingest listens."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    received: list[str] = []
    tls_dir = fleet.kiosk / TLS.lstrip("/")

    def client(cn: str, cert: Path, key: Path) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cn, protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(fleet.ca_dir / "ca.crt"), certfile=str(cert), keyfile=str(key))
        return c

    hq = client(
        "hq.ingest", fleet.ca_dir / "issued/hq.ingest.crt", fleet.ca_dir / "issued/hq.ingest.key"
    )
    subscribed: list[int] = []
    hq.on_message = lambda c, u, msg: received.append(msg.topic)
    hq.on_subscribe = lambda c, u, mid, codes, props: subscribed.append(mid)
    hq.connect("localhost", fleet.port)
    hq.loop_start()
    kiosk = client(device_id, tls_dir / "client.crt", tls_dir / "client.key")
    reason_codes: list[int] = []
    kiosk.on_publish = lambda c, u, mid, rc, props: reason_codes.append(int(rc.value))
    subacks: list[str] = []
    kiosk.on_subscribe = lambda c, u, mid, codes, props: subacks.extend(str(x) for x in codes)
    try:
        hq.subscribe("kiosk/+/records", qos=1)
        wait_for(lambda: bool(subscribed), 30, "HQ subscription")
        kiosk.connect("localhost", fleet.port)
        kiosk.loop_start()
        kiosk.publish("kiosk/kiosk-0000000000000000/records", b"{}", qos=1).wait_for_publish(20)
        kiosk.publish(f"kiosk/{device_id}/records", b"{}", qos=1).wait_for_publish(20)
        wait_for(lambda: len(received) >= 1, 30, "HQ to receive the kiosk's record")
        kiosk.subscribe([("$share/hq/kiosk/+/records", 1), (f"kiosk/{device_id}/acks", 1)])
        wait_for(lambda: len(subacks) >= 2, 30, "the kiosk's SUBACK")
        time.sleep(0.5)  # any wrongly routed message would have arrived by now
        return received, reason_codes[0], subacks
    finally:
        kiosk.loop_stop()
        kiosk.disconnect()
        hq.loop_stop()
        hq.disconnect()


def test_broker_root_serves_tls_with_per_device_acl(fleet: Fleet) -> None:
    conf = (fleet.broker / "etc/mosquitto/mosquitto.conf").read_text("ascii")
    assert "require_certificate true" in conf and "crlfile" in conf
    assert not re.search(r"^acl_file", conf, re.M), conf  # never checks subscriptions
    assert re.search(r"^plugin .*/mosquitto_dynamic_security\.so$", conf, re.M), conf
    acl = json.loads((fleet.broker / "etc/mosquitto/dynamic-security.json").read_text())
    assert {c["username"] for c in acl["clients"]} >= {fleet.device_id(), "hq.ingest"}
    assert (fleet.broker / "etc/systemd/system/multi-user.target.wants/mosquitto.service").exists()
    device_id = fleet.device_id()
    broker = Broker(fleet)
    try:
        received, denied_code, subacks = _mqtt_roundtrip(fleet, device_id)
    finally:
        log = broker.stop()
    assert received == [f"kiosk/{device_id}/records"], log
    assert denied_code == 135, log  # MQTT v5 "not authorized" for another kiosk's topic
    assert subacks == ["Not authorized", "Granted QoS 1"], log  # HQ's group: no; own acks


# --- day 2 ------------------------------------------------------------------------------


def _versioned_repo(fleet: Fleet, version: str) -> Path:
    """A copy of the repository whose package says `version` (an upgrade's new release)."""
    dest = fleet.tmp / f"repo-{version}"
    shutil.copytree(
        REPO,
        dest,
        ignore=shutil.ignore_patterns(".venv", ".git", "*_cache", "build", "ansible", "tests"),
    )
    for rel, old, new in [
        ("pyproject.toml", 'version = "0.1.0"', f'version = "{version}"'),
        ("edge/__init__.py", '__version__ = "0.1.0"', f'__version__ = "{version}"'),
    ]:
        path = dest / rel
        text = path.read_text("utf-8")
        assert old in text, f"{rel}: expected {old!r}"
        path.write_text(text.replace(old, new), "utf-8")
    return dest


def _running_version(fleet: Fleet) -> str:
    return os.readlink(fleet.kiosk / "opt/bansos-edge/venv").rsplit("/", 1)[-1]


def test_upgrade_switches_release_and_rolls_back_a_failing_batch(fleet: Fleet) -> None:
    good = _versioned_repo(fleet, "0.1.1")
    # In a chroot nothing runs, so the health check of a good release is `edge config check`.
    healthy = {
        "bansos_edge_version": "0.1.1",
        "bansos_repo_dir": str(good),
        "upgrade_health_retries": 0,
        "upgrade_health_command": [
            "/opt/bansos-edge/venv/bin/edge",
            "config",
            "check",
            "--config",
            "/etc/bansos-edge/edge.toml",
        ],
    }
    _must_pass(fleet.play("upgrade.yml", "-e", json.dumps(healthy)), "upgrade to 0.1.1")
    assert _running_version(fleet) == "0.1.1"
    version = in_root(fleet.kiosk, "/opt/bansos-edge/venv/bin/edge", "--version")
    assert "0.1.1" in version.stdout, version

    # The real `edge doctor` fails in a chroot (no camera, gpsd or broker running):
    # the batch must go back to 0.1.1 and the run must fail.
    bad = _versioned_repo(fleet, "0.1.2")
    down = fleet.play(
        "upgrade.yml",
        "-e",
        "bansos_edge_version=0.1.2",
        "-e",
        f"bansos_repo_dir={bad}",
        "-e",
        "upgrade_health_retries=0",
        "-e",
        "upgrade_health_delay=0",
    )
    out = down.stdout + down.stderr
    assert down.returncode != 0, out[-4000:]
    assert "rolled back to" in out and "0.1.1" in out, out[-4000:]
    assert "FAIL" in out, out[-4000:]  # doctor's own report of what failed
    assert _running_version(fleet) == "0.1.1"
    assert (fleet.kiosk / "opt/bansos-edge/releases/0.1.2/bin/edge").exists()


def test_rotate_cert_issues_new_certificate_and_revokes_old(fleet: Fleet) -> None:
    tls_dir = fleet.kiosk / TLS.lstrip("/")
    old_cert = _cert(tls_dir / "client.crt")
    old_key = (tls_dir / "client.key").read_bytes()
    _must_pass(fleet.play("rotate-cert.yml", "--limit", f"{KIOSK},controller,brokers"), "rotate")
    new_cert = _cert(tls_dir / "client.crt")
    assert new_cert.serial_number != old_cert.serial_number
    assert (tls_dir / "client.key").read_bytes() != old_key
    assert _cn(new_cert) == _cn(old_cert) == fleet.device_id()
    broker_crl = _crl_serials(fleet.broker / "etc/mosquitto/certs/crl.pem")
    assert old_cert.serial_number in broker_crl
    assert new_cert.serial_number not in broker_crl


def test_revoke_puts_kiosk_on_broker_crl_and_broker_refuses_it(fleet: Fleet) -> None:
    device_id = fleet.device_id()
    serial = _cert(fleet.kiosk / TLS.lstrip("/") / "client.crt").serial_number
    broker = Broker(fleet)
    try:
        assert _kiosk_can_connect(fleet), "the kiosk's current certificate must be accepted"
    finally:
        broker.stop()

    _must_pass(fleet.play("revoke.yml", "-e", f"device={KIOSK}"), "revoke")
    assert serial in _crl_serials(fleet.broker / "etc/mosquitto/certs/crl.pem")
    entry = fleet.registry[device_id]
    assert entry["revoked"] is True and entry["revoked_serial"] == serial

    broker = Broker(fleet)
    try:
        assert not _kiosk_can_connect(fleet), "a revoked kiosk must be refused"
    finally:
        broker.stop()

    # Provisioning the revoked kiosk again is refused.
    site = fleet.play("site.yml", "--limit", f"{KIOSK},controller", "--tags", "kiosk_identity")
    assert site.returncode != 0 and "was revoked" in site.stdout + site.stderr
