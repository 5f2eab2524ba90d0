"""One MQTT v5 connection through paho-mqtt 2.x, driven from the caller's thread.

A fresh paho client per connection: paho's own queue is memory only and its message ids
restart with every connection, so nothing of it is carried over; the outbox is the truth
and the record id is the identity. Reconnecting (with backoff and jitter) is the caller's
job, not paho's. Callbacks only append events; the caller acts on them after `loop()`.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import MqttConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnAck:
    ok: bool
    session_present: bool
    reason: str
    receive_maximum: int = 65535  # the broker's in-flight limit for our QoS 1 publishes


@dataclass(frozen=True)
class PubAck:
    mid: int
    ok: bool
    reason_code: int
    reason: str


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class Lost:
    reason: str


Event = ConnAck | PubAck | Message | Lost


class LinkError(Exception):
    """Connecting failed before MQTT could say why (DNS, TCP, TLS)."""


class Link:
    """A single connection attempt and its life; make a new Link to reconnect."""

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        will_topic: str,
        will_payload: bytes,
        inflight: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.events: list[Event] = []
        self.connected = False
        self.closed = False
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        c.max_inflight_messages_set(inflight or cfg.inflight)
        c.max_queued_messages_set(0)
        c.connect_timeout = cfg.connect_timeout_s
        c.will_set(will_topic, will_payload, qos=1, retain=True)
        if cfg.tls:
            c.tls_set(
                ca_certs=cfg.ca_file or None,
                certfile=cfg.cert_file or None,
                keyfile=cfg.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c

    # -- paho callbacks (run inside loop(), in the caller's thread) -----------
    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: Any, props: Any) -> None:
        ok = not rc.is_failure
        self.connected = ok
        # paho does not hold us to the broker's Receive Maximum; exceeding it is a protocol
        # error that gets the connection dropped, so the caller caps its window with it.
        rmax = getattr(props, "ReceiveMaximum", None)
        self.events.append(
            ConnAck(
                ok,
                bool(getattr(flags, "session_present", False)),
                str(rc),
                int(rmax) if isinstance(rmax, int) and rmax > 0 else 65535,
            )
        )

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connected = False
        self.closed = True
        self.events.append(Lost(str(rc)))

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        self.events.append(PubAck(int(mid), not rc.is_failure, int(rc.value), str(rc)))

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        self.events.append(Message(str(msg.topic), bytes(msg.payload), bool(msg.retain)))

    # -- operations ------------------------------------------------------------
    def open(self) -> None:
        """TCP + TLS + CONNECT (clean_start=False, session expiry); CONNACK arrives via loop()."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        try:
            rc = self.client.connect(
                self.cfg.host,
                self.cfg.port,
                keepalive=self.cfg.keepalive_s,
                clean_start=False,
                properties=props,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.closed = True
            raise LinkError(
                f"{self.cfg.host}:{self.cfg.port}: {type(exc).__name__}: {exc}"
            ) from None
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self.closed = True
            raise LinkError(f"{self.cfg.host}:{self.cfg.port}: {mqtt.error_string(rc)}")

    def loop(self, timeout: float) -> list[Event]:
        """Run paho's network I/O for up to `timeout` s; return what happened."""
        if not self.closed:
            rc = self.client.loop(timeout=timeout)
            if rc != mqtt.MQTT_ERR_SUCCESS and not self.closed:
                # paho reports a lost socket without always calling on_disconnect.
                self.connected = False
                self.closed = True
                self.events.append(Lost(mqtt.error_string(rc)))
        out, self.events = self.events, []
        return out

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Queue one publish; its mid (this connection only), or None if the link is down."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.debug("publish to %s: %s", topic, mqtt.error_string(info.rc))
            return None
        return int(info.mid)

    def subscribe(self, topics: list[str]) -> None:
        self.client.subscribe([(t, 1) for t in topics])

    def want_write(self) -> bool:
        return bool(self.client.want_write())

    def close(self, payload_topic: str | None = None, payload: bytes | None = None) -> None:
        """Disconnect politely (optionally publishing a last retained message first)."""
        if self.closed:
            return
        try:
            if payload_topic is not None and payload is not None and self.connected:
                info = self.client.publish(payload_topic, payload, qos=1, retain=True)
                for _ in range(50):
                    if info.is_published():
                        break
                    self.client.loop(timeout=0.1)
            self.client.disconnect()
            self.client.loop(timeout=0.1)
        except Exception as exc:  # closing must never raise into shutdown
            log.debug("closing MQTT link: %s", exc)
        finally:
            sock = self.client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()  # this paho client is discarded; free the fd now
            self.connected = False
            self.closed = True
