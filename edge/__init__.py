"""bansos-edge: verified social-aid handover on a Raspberry Pi kiosk."""

__version__ = "0.1.0"
