"""The arm64 check: install the kiosk software into an emulated Debian arm64 root and
compare its answers with the x86 host's (see tools/arm64_check.py)."""
