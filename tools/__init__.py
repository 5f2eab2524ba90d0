"""Build-time tools (model conversion); never installed on a kiosk."""
