#!/usr/bin/env bash
# Install the runtime on a Raspberry Pi or Jetson as a systemd service.
# Usage: sudo bash firmware_config/install_device.sh firmware_config/profiles/raspberry-pi-kiosk.toml [models/face]
# Copy the exported model directory (built on a workstation with `emotion-export face`) to the device first.
# Not executed on a Pi or Jetson by this project's CI (no such board here); the steps are plain Debian ones.
set -euo pipefail
profile=${1:?give a profile, e.g. firmware_config/profiles/raspberry-pi-kiosk.toml}
models=${2:-models/face}
repo=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$models/emotion.int8.tflite.json" ] || { echo "no exported models in $models: run emotion-export face" >&2; exit 2; }
apt-get install -y -qq python3-venv libportaudio2 libsndfile1
id emotion-edge >/dev/null 2>&1 || useradd --system --home /var/lib/emotion-edge --groups video,audio emotion-edge
python3 -m venv /opt/emotion-edge/venv
/opt/emotion-edge/venv/bin/pip install -q "$repo[runtime]"
mkdir -p /opt/emotion-edge/models /etc/emotion-edge
rm -rf /opt/emotion-edge/models/face && cp -r "$models" /opt/emotion-edge/models/face
install -m 0644 "$profile" /etc/emotion-edge/config.toml
/opt/emotion-edge/venv/bin/emotion-edge check-config /etc/emotion-edge/config.toml
install -m 0644 "$repo/firmware_config/systemd/emotion-edge.service" /etc/systemd/system/emotion-edge.service
systemctl daemon-reload
systemctl enable --now emotion-edge
echo "installed; follow it with: journalctl -u emotion-edge -f"
