"""What the kiosk and HQ must agree on, written once: ids, MQTT topics, acks, the wire
format, the record's canonical form and UTC time.

Why a package of its own: the kiosk (`edge`) and HQ (`edge_hq`) ship as separate
distributions; both import this and it imports neither, so the two ends cannot drift.
Pure functions and constants only (plus PyNaCl for the ack signature): no I/O, no config.
"""
