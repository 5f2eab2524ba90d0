"""Publish one retained message (a signed roster bundle) to the broker and wait for PUBACK."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.errors import DeviceMissing
from edge_hq.config import HqSettings
from edge_hq.mqtt_tls import apply_tls


def roster_topic(settings: HqSettings, device_id: str) -> str:
    return f"{settings.broker.topic_prefix}/{device_id}/roster"


def publish_retained(settings: HqSettings, topic: str, payload: bytes) -> None:
    """Connect, publish QoS 1 retained, wait for the broker's PUBACK; DeviceMissing if not."""
    b = settings.broker
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{b.client_id}-roster", protocol=mqtt.MQTTv5
    )
    apply_tls(client, b, settings.source, roster=True)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: object, _p: object = None) -> None:
        if getattr(rc, "is_failure", False):
            refused.append(str(rc))
        connected.set()

    acked: list[object] = []

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, rc: object, _p: object = None) -> None:
        acked.append(rc)

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(b.host, b.port, keepalive=b.keepalive_s)
    except OSError as exc:
        raise DeviceMissing(f"broker {b.host}:{b.port}: cannot connect: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(b.connect_timeout_s) or refused:
            why = refused[0] if refused else "no CONNACK"
            raise DeviceMissing(f"broker {b.host}:{b.port}: not connected ({why})")
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(b.connect_timeout_s)
        if not info.is_published():
            raise DeviceMissing(f"broker {b.host}:{b.port}: no PUBACK for {topic}")
        if acked and getattr(acked[0], "is_failure", False):
            raise DeviceMissing(f"broker {b.host}:{b.port}: refused {topic}: {acked[0]}")
    finally:
        client.disconnect()
        client.loop_stop()
