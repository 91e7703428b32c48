#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine with Python 3.11 (run as root or with sudo rights):
# Debian packages for the C builds and the emulator, a virtual environment in .venv with the CPU torch
# wheel first, then esc2c with its test extras. A second run skips whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}

APT_PKGS=(cmake gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
VPY=.venv/bin/python
if ! $VPY -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0 (CPU)"
  $VPY -m pip install -q "torch==2.13.0"
fi
stamp=.venv/.esc2c-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing esc2c and its dependencies"
  $VPY -m pip install -q -e ".[test]"
  echo "$want" > "$stamp"
fi
