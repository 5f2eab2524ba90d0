"""On-device face verification: TFLite detector, alignment, quality gates, embedder, matcher.

Imports nothing from edge.capture or edge.uplink; the daemon wires them together.
"""
