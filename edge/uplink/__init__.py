"""The uplink: a durable SQLite outbox drained over MQTT v5 to HQ, acks and rosters back.

Imports neither `edge.capture` nor `edge.infer`; the daemon wires it in through `edge.parts`.
"""

from edge.uplink.service import Uplink

__all__ = ["Uplink"]
