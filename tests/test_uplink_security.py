"""The shipped broker config and ACL enforce identity: CN = username = client id, own subtree only.

Runtime: about 10 s.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.store import Store
from edge.uplink import Uplink
from tests.roster_fixtures import MODEL_SHA
from tests.support.helpers import wait_for
from tests.support.mqtt import Broker, ClientTls, Pki, connect_client, puback
from tests.uplink_support import make_kiosk, mqtt_config, outbox_config

A = "kiosk-aaaaaaaaaaaaaaaa"
B = "kiosk-bbbbbbbbbbbbbbbb"


def _puback_code(client: Any, topic: str) -> int:
    return puback(client, topic, b'{"id": "x"}')


def test_kiosk_cannot_publish_into_another_kiosks_topic(broker: Broker, pki: Pki) -> None:
    a = connect_client(broker, pki.client(A))
    try:
        assert _puback_code(a, f"kiosk/{A}/records") in (0, 16)  # success / no subscribers
        assert _puback_code(a, f"kiosk/{B}/records") == 135  # not authorized
        assert _puback_code(a, f"kiosk/{B}/status") == 135
    finally:
        a.disconnect()
        a.loop_stop()


def test_uplink_counts_refused_records_and_keeps_them(
    tmp_path: Path, broker: Broker, pki: Pki
) -> None:
    """A kiosk configured with a device id that is not its certificate's CN gets nothing through."""
    kiosk = make_kiosk(tmp_path, pki, 3)
    other = pki.client(A)  # wrong certificate for this device id
    store = Store(kiosk.db)
    up = Uplink(
        store, mqtt_config(broker, other), outbox_config(), kiosk.device_id, None, MODEL_SHA
    )
    up.start()
    try:
        wait_for(lambda: up.stats()["counters"]["rejected"] >= 3, 30, "PUBACK 135 for all three")
        s = up.stats()
        assert s["pending"] == 3 and s["sent"] == 0 and s["acked"] == 0
        assert up.alive and s["counters"]["loop_errors"] == 0
        time.sleep(1.0)  # refused records wait for the resend timeout, no hot loop
        assert up.stats()["counters"]["published"] == 3
    finally:
        up.stop(20)
        store.close()


def _tls_alert(broker: Broker, trust: Path, tls: ClientTls | None) -> str | None:
    """Handshake (trusting `trust`, presenting `tls` if given), then read: the TLS alert the
    broker sent (OpenSSL's reason, e.g. TLSV13_ALERT_CERTIFICATE_REQUIRED), or None.

    Under TLS 1.3 the server checks the client's certificate after the client has finished
    its side of the handshake, so the refusal arrives as an alert on the first read.
    """
    ctx = ssl.create_default_context(cafile=str(trust))
    ctx.check_hostname = False
    if tls is not None:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    with socket.create_connection((broker.host, broker.port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as s:
                s.settimeout(3)  # an accepted client gets nothing until it sends CONNECT
                s.recv(16)
        except TimeoutError:
            return None
        except ssl.SSLError as exc:
            return str(exc.reason)
    return None


def _paho_outcome(broker: Broker, trust: Path, tls: ClientTls | None) -> tuple[str, str]:
    """What paho sees: ("connack", reason) once the broker answers CONNECT, or ("lost", why)
    when the connection drops before any CONNACK."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=A, protocol=mqtt.MQTTv5)
    if tls is None:
        c.tls_set(ca_certs=str(trust))
    else:
        c.tls_set(ca_certs=str(trust), certfile=str(tls.cert_file), keyfile=str(tls.key_file))
    seen: list[tuple[str, str]] = []
    c.on_connect = lambda _c, _u, _f, reason, _p: seen.append(("connack", str(reason)))
    try:
        rc = c.connect(broker.host, broker.port, keepalive=10)
        if rc != mqtt.MQTT_ERR_SUCCESS:  # the alert can arrive while CONNECT is being sent
            return ("lost", mqtt.error_string(rc))
        for _ in range(100):
            rc = c.loop(0.1)
            if seen:
                return seen[0]
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return ("lost", mqtt.error_string(rc))
        return ("waiting", "no CONNACK and no disconnect in 10 s")
    finally:
        c.disconnect()


def test_foreign_ca_and_missing_certificate_are_refused(
    tmp_path: Path, broker: Broker, pki: Pki
) -> None:
    lost = ("lost", mqtt.error_string(mqtt.MQTT_ERR_CONN_LOST))
    # no client certificate: the broker's handshake alert, and paho never gets a CONNACK
    assert _tls_alert(broker, pki.ca_file, None) == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert _paho_outcome(broker, pki.ca_file, None) == lost
    # a certificate from another CA: refused as unknown
    other = Pki(tmp_path / "other-ca", ca_cn="not our CA").client(A)
    assert _tls_alert(broker, pki.ca_file, other) == "TLSV1_ALERT_UNKNOWN_CA"
    assert _paho_outcome(broker, pki.ca_file, other) == lost
    # the same broker takes a proper certificate: no alert, and a successful CONNACK
    assert _tls_alert(broker, pki.ca_file, pki.client(A)) is None
    assert _paho_outcome(broker, pki.ca_file, pki.client(A)) == ("connack", "Success")


def test_session_takeover_by_client_id_fails(broker: Broker, pki: Pki) -> None:
    b = connect_client(broker, pki.client(B), clean_start=False, session_expiry=600)
    lost = threading.Event()
    got: list[str] = []
    b.on_disconnect = lambda *_a: lost.set()
    b.on_message = lambda _c, _u, m: got.append(m.topic)
    b.subscribe(f"kiosk/{B}/acks", qos=1)
    # A presents B's client id: the broker uses A's CN instead, so B keeps its session.
    a = connect_client(broker, pki.client(A), client_id=B, clean_start=False, session_expiry=600)
    a_got: list[str] = []
    a.on_message = lambda _c, _u, m: a_got.append(m.topic)
    a.subscribe(f"kiosk/{B}/acks", qos=1)
    hq = connect_client(broker, pki.client("hq.ingest.2"))
    try:
        time.sleep(0.5)
        hq.publish(f"kiosk/{B}/acks", b'{"ids": []}', qos=1).wait_for_publish(10)
        wait_for(lambda: got == [f"kiosk/{B}/acks"], 20, "B to get its ack")
        time.sleep(0.5)
        assert not lost.is_set(), "B was kicked off by A"
        assert a_got == [], "A read B's acks"
    finally:
        for c in (a, b, hq):
            c.disconnect()
            c.loop_stop()


def test_hq_reads_through_a_shared_subscription(broker: Broker, pki: Pki) -> None:
    hq = connect_client(broker, pki.client("hq.ingest.3"))
    got: list[bytes] = []
    hq.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    hq.subscribe("$share/ingest/kiosk/+/records", qos=1)
    a = connect_client(broker, pki.client(A))
    try:
        time.sleep(0.5)
        a.publish(f"kiosk/{A}/records", b"r1", qos=1).wait_for_publish(10)
        wait_for(lambda: got == [b"r1"], 20, "HQ to receive through $share")
    finally:
        for c in (a, hq):
            c.disconnect()
            c.loop_stop()
