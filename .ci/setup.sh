#!/usr/bin/env bash
# Idempotent set-up from a bare Debian 12 / Ubuntu 22.04+: system packages, a virtualenv, and the
# locked Python packages (firmware_config/locks/test.txt); re-installs when a lock or setup.cfg changes.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || {
  echo "setup: error: python3 >= 3.10 is needed (found: $(python3 --version 2>&1)); install Debian 12 or Ubuntu 22.04+'s python3" >&2
  exit 2
}
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: error: run as root or install sudo (system packages are needed)" >&2; exit 2; }
  sudo="sudo"
fi

missing=()
for pkg in python3-venv mosquitto mosquitto-clients espeak-ng libportaudio2 libsndfile1 sox openssl systemd chromium fonts-dejavu-core; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

lock=firmware_config/locks/test.txt
stamp=".venv/.installed-$(cat "$lock" setup.cfg | sha256sum | cut -c1-16)"
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  [ -e .venv ] && echo "setup: .venv is incomplete (no working pip): making it again"
  rm -rf .venv
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ]; then
  echo "setup: installing the locked Python packages into .venv (first run takes a few minutes)"
  rm -f .venv/.installed-*
  # (this machine's pip.conf names local indexes that may be absent: pip warns once per package)
  .venv/bin/python -m pip install -q --require-hashes -r "$lock" 2> >(grep -v "^WARNING: Location" >&2)
  .venv/bin/python -m pip install -q --no-deps -e . 2> >(grep -v "^WARNING: Location" >&2)
  touch "$stamp"
fi
