#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian-like machine: system packages, a virtualenv, the package with its extras.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in mosquitto mosquitto-clients espeak-ng libportaudio2 libsndfile1 sox openssl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.installed-$(sha256sum setup.cfg | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[runtime,export,test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
