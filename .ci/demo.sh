#!/usr/bin/env bash
# The main job on built-in inputs: build the default models from their pinned sources (printing the parity
# table), then run the runtime on the demo video against a private mosquitto and show what a hub receives.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/emotion-export face --out models/face 2> >(grep -vE "^(W0000|I0000)|absl|oneDNN|AVX|XNNPACK" >&2)

port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
work=$(mktemp -d)
trap 'kill $broker $listener 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/broker.log" 2>&1 &
broker=$!
sleep 0.5
mosquitto_sub -p "$port" -v -t 'emotion_edge/#' > "$work/hub.log" &
listener=$!
echo
echo "== live demo: 12 s video of real faces -> BlazeFace -> tracker -> emotion CNN -> MQTT on 127.0.0.1:$port"
.venv/bin/emotion-edge run --demo --pretty --models models/face --mqtt-port "$port" 2>"$work/runtime.log"
sleep 1
echo
echo "== what a subscriber on emotion_edge/# received (messages per topic)"
cut -d" " -f1 "$work/hub.log" | sort | uniq -c
