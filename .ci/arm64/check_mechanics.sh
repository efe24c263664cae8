#!/usr/bin/env bash
# Proves the arm64 emulation works without the device bundle: offline wheels, numpy/cv2, onnxruntime (with and
# without the fake cpuinfo), LiteRT int8, LSL between two processes, MQTT to the host. Usage: .ci/arm64/check_mechanics.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wheels=${ARM64_WHEELS:-/tmp/arm64wheels}
step() { echo "arm64-check: $*"; }

bash "$here/../arm64_rootfs.sh"
command -v mosquitto >/dev/null || apt-get -qq -o DPkg::Lock::Timeout=600 install -y mosquitto mosquitto-clients >/dev/null
if ! ls "$wheels"/mne_lsl-*.whl >/dev/null 2>&1; then
  step "pip download aarch64 wheels -> $wheels"
  plat=(--only-binary=:all: --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64
        --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp --abi cp311 -d "$wheels")
  python3 -m pip download -q "${plat[@]}" numpy onnxruntime ai-edge-litert opencv-python-headless pylsl paho-mqtt
  python3 -m pip download -q --no-deps "${plat[@]}" mne-lsl==1.14.0
fi

. "$here/lib.sh"
arm64_enter_mounts
root=$(arm64_root)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mosquitto -p "$port" >/tmp/arm64-check-mosquitto.log 2>&1 &
broker=$!
trap 'kill "$broker" 2>/dev/null; arm64_leave_mounts' EXIT

step "offline venv in the root"
mkdir -p "$root/opt/ci-check"
cp -r "$wheels" "$root/opt/ci-check/wheels"
cp "$here/tiny_int8_tflite.py" "$here/lsl_pair.py" "$root/opt/ci-check/"
unzip -qjo "$wheels"/mne_lsl-*.whl 'mne_lsl/lsl/lib/liblsl.so*' -d "$root/opt/ci-check/lib"
arm64_run python3 -m venv /opt/ci-check/venv
arm64_run /opt/ci-check/venv/bin/pip install -q --no-index --find-links /opt/ci-check/wheels \
  numpy onnxruntime ai-edge-litert opencv-python-headless pylsl paho-mqtt
py=/opt/ci-check/venv/bin/python

step "(a) numpy + cv2"
arm64_run $py -c 'import numpy, cv2, platform; print(platform.machine(), "numpy", numpy.__version__, "cv2", cv2.__version__)'

step "(b) onnxruntime import, host cpuinfo then fake cpuinfo"
umount "$root/proc/cpuinfo"
rc=0; arm64_run $py -c 'import onnxruntime' 2>/dev/null || rc=$?
# qemu >= 8 answers /proc/cpuinfo itself (an ARM one), so this passes there; under 7.2 it is a segfault (139).
step "    without fake cpuinfo: exit $rc, guest sees $(arm64_run grep -m1 'CPU part' /proc/cpuinfo || echo 'no ARM cpuinfo')"
mount --bind -o ro "$here/cpuinfo" "$root/proc/cpuinfo"
arm64_run $py -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'

step "(c) LiteRT int8 FULLY_CONNECTED vs numpy (QEMU_CPU=${ARM64_QEMU_CPU:-cortex-a72})"
arm64_run $py /opt/ci-check/tiny_int8_tflite.py 2>&1 | grep -v 'XNNPACK delegate'
rc=0; ARM64_QEMU_CPU=max arm64_run $py /opt/ci-check/tiny_int8_tflite.py 2>&1 | grep -v 'XNNPACK delegate' || rc=$?
step "    same with QEMU_CPU=max (information only): exit $rc"

step "(d) LSL outlet + resolve_byprop inlet in two processes, as a service-like user"
arm64_run useradd --system --no-create-home ci-check
echo "PYLSL_LIB=$(cd "$root" && ls opt/ci-check/lib/liblsl.so* | sed 's,^,/,' | head -n1)" >"$root/opt/ci-check/env"
ARM64_SERVICE_USER=ci-check ARM64_ENV_FILE=/opt/ci-check/env arm64_run_as_service $py /opt/ci-check/lsl_pair.py

step "(e) MQTT from the root to the host's mosquitto on 127.0.0.1:$port"
timeout 120 mosquitto_sub -p "$port" -t ci/arm64 -C 1 >/tmp/arm64-check-sub.txt &
sub=$!
sleep 1
arm64_run $py -c '
import sys, time, paho.mqtt.client as mqtt
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_start()
c.publish("ci/arm64", "hello from arm64", qos=1).wait_for_publish(30)
c.loop_stop()
print("mqtt: published")' "$port"
wait "$sub"
step "    host mosquitto_sub got: $(cat /tmp/arm64-check-sub.txt)"
step "all checks passed"
