#!/usr/bin/env bash
# The main job on built-in inputs: build the default face and voice models from their pinned sources
# (parity tables), then run face (demo video), voice (synthetic speech) and EEG (simulated Muse) into a
# private mosquitto and show what a hub received. Exits non-zero when the hub received no events.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
bin=.venv/bin
seconds=${DEMO_SECONDS:-45}

echo "== building the default models (converted, quantized and checked against the float models)"
quiet() { "$@" 2> >(grep -v "XNNPACK delegate" >&2); }  # LiteRT's one start-up notice per process
quiet $bin/emotion-export face --out models/face
quiet $bin/emotion-export voice --out models/voice
echo "(known: int8 TFLite misses the project's 98% agreement bar, face 95.3%, voice 90.5%; docs/quantization.md)"

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$($bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/broker.log" 2>&1 & pids+=($!)
sleep 0.5
mosquitto_sub -h 127.0.0.1 -p "$port" -v -t 'emotion_edge/#' > "$work/hub.log" & pids+=($!)

$bin/emotion-edge demo-video "$work/faces.avi" >/dev/null
espeak-ng -s 150 -w "$work/speech.wav" "Good morning. The weather is lovely today, and I am looking forward to \
the weekend. Could you please turn the music up a little?" 
$bin/emotion-edge simulate-muse --name demo-muse >"$work/muse.log" 2>&1 & pids+=($!)
cat > "$work/demo.toml" <<TOML
[device]
id = "demo"
data_dir = "$work/data"
health_interval_s = 5.0

[camera]
source = "$work/faces.avi"
on_end = "loop"
realtime = true

[face]
models = "$PWD/models/face"

[voice]
enabled = true
source = "file"
models = "$PWD/models/voice"

[audio_file]
path = "$work/speech.wav"
loop = true

[eeg]
enabled = true

[lsl]
name = "demo-muse"

[mqtt]
host = "127.0.0.1"
port = $port
TOML

echo
echo "== live: face (12 s video of real faces), voice (synthetic speech) and EEG (simulated Muse) for $seconds s -> MQTT on 127.0.0.1:$port"
status=0
$bin/emotion-edge run --config "$work/demo.toml" --pretty --duration "$seconds" 2>"$work/runtime.log" || status=$?
sleep 1
echo
echo "== what a subscriber on emotion_edge/# received (messages per topic)"
cut -d" " -f1 "$work/hub.log" | sort | uniq -c
events=$(grep -c '/event ' "$work/hub.log" || true)
if [ "$status" -ne 0 ] || [ "$events" -eq 0 ]; then
  echo "demo: FAILED: runtime exit $status, $events events at the hub; the runtime's log:" >&2
  tail -20 "$work/runtime.log" >&2
  exit 1
fi
echo "demo: OK: $events events reached the hub"
