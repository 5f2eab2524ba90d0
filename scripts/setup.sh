#!/usr/bin/env bash
# One-shot set-up on a fresh Debian 12 (or Raspberry Pi OS Bookworm) machine:
# the system services the daemon and its tests use, and a virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3-venv python3-dev build-essential pkg-config libsystemd-dev
  mosquitto mosquitto-clients gpsd gpsd-clients openssl
  iproute2 nftables systemd util-linux postgresql procps debootstrap
  qemu-user-static binfmt-support
  chromium fonts-dejavu-core
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The tests start their own mosquitto and gpsd on free loopback ports; the
# packaged system instances are not needed and would hold the default ports.
for svc in mosquitto gpsd gpsd.socket; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
done

# The arm64 check (tools/arm64_check.py, tests/test_arm64.py) runs the kiosk's aarch64
# wheels under qemu-user-static: that needs binfmt_misc mounted and the handler enabled.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  $SUDO update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 \
    || $SUDO systemctl restart systemd-binfmt >/dev/null 2>&1 || true
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Both distributions, editable: the kiosk's (bansos-edge, root pyproject.toml) and HQ with
# the demo and evaluation tools (bansos-edge-hq, hq/pyproject.toml), whose entry points add
# `edge hq`, `edge demo`, `edge eval` and `edge liveness` to the `edge` command.
stamp=".venv/.setup-$(cat pyproject.toml hq/pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev,litert,fleet]' -e './hq[eval]'
  touch "$stamp"
fi
echo "setup: done (.venv ready; try: .venv/bin/edge demo)"
