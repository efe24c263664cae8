"""What a Home Assistant home sees, checked on the wire: `emotion-edge run` (demo video faces, a simulated Muse
over real LSL) -> a real mosquitto -> the retained discovery configs, states, availability, health and
controls a HA instance would read. Templates are rendered with Jinja2's immutable sandbox the way HA renders
them (`value_json`, the `to_json` filter; the output "None" is HA's unknown)."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest

from edge.demo import build_demo_video
from tests.mqtt_broker import Subscriber, broker_fixture  # noqa: F401 (the `broker` fixture)

from .runtime_helpers import finish, kill, output, start_runtime, wait_for
from .test_runtime_eeg import simulated_muse

DEVICE = "hadev"
BASE = f"emotion_edge/{DEVICE}"
FER = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
BLUEPRINT = Path(__file__).resolve().parents[1] / "firmware_config" / "homeassistant" / "low_valence_calm_music.yaml"


def render(template: str, payload: bytes) -> str:
    """A value template rendered as HA does: an immutable sandbox, `value_json`, `to_json`."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment()
    env.filters["to_json"] = json.dumps
    return env.from_string(template).render(value_json=json.loads(payload)).strip()


def retained(port: int, topics: list[str], settle: float = 1.0) -> dict[str, bytes]:
    """What a client connecting now receives as retained messages (HA after a restart)."""
    subscriber = Subscriber(port, topics)
    time.sleep(settle)
    subscriber.close()
    return {m.topic: m.payload for m in subscriber.messages if m.retain}


def latest(subscriber: Subscriber, topic: str) -> bytes | None:
    messages = [m for m in subscriber.on(topic) if m.payload]
    return messages[-1].payload if messages else None


def health(subscriber: Subscriber) -> dict:
    return json.loads(latest(subscriber, f"{BASE}/health") or b"{}")


def check_rule(configs: dict[str, dict], published: dict[str, list[bytes]]) -> None:
    """The rules every discovery config must follow."""
    for topic, config in configs.items():
        component, node, object_id = topic.split("/")[1:4]
        assert node == DEVICE and config["unique_id"] == f"emotion_edge_{DEVICE}_{object_id}"
        assert config["availability_mode"] == "all"
        assert config["availability"][0]["topic"] == f"{BASE}/availability"
        modality = object_id.split("_")[0]
        if config["state_topic"].endswith("/state") or component == "event":
            assert config["availability"][1]["topic"] == f"{BASE}/{modality}/availability", topic
        else:  # health, controls: the device's availability only (a switch must work while its camera is off)
            assert len(config["availability"]) == 1, topic
        assert DEVICE not in config["name"] and "Emotion edge" not in config["name"], "the device name is not repeated"
        assert config["device"]["name"] == DEVICE and config["device"]["hw_version"]
        # no entity without a value source: its state topic carried messages during the run
        assert published.get(config["state_topic"]), f"{topic} reads {config['state_topic']}, which nobody publishes"
        assert "json_attributes_topic" not in config, "attributes would write a recorder row per update"
        if config["state_topic"] == f"{BASE}/health":
            assert config["entity_category"] == "diagnostic", topic
        if component in ("switch", "number"):
            assert config["entity_category"] == "config"
            assert config["command_topic"] == f"{BASE}/set/{object_id}" and config["state_topic"] == f"{BASE}/controls"
        if component in ("sensor", "binary_sensor") and config["state_topic"].endswith("/state"):
            assert config["expire_after"] > 0, topic
        if component == "sensor" and config.get("device_class") == "enum":
            assert config["options"] and "state_class" not in config and "unit_of_measurement" not in config
        if config.get("device_class") == "duration":
            assert config["unit_of_measurement"] == "ms"


def test_home_assistant_sees_truthful_entities_presence_diagnostics_and_controls(broker, face_models, tmp_path):
    video = build_demo_video(tmp_path / "faces.avi")
    everything = Subscriber(broker.port, ["emotion_edge/#", "homeassistant/#"])
    states = Subscriber(broker.port, [f"{BASE}/+/state"])  # the whole run, for the recorder count
    with simulated_muse() as source_id:
        config = {
            "device": {"id": DEVICE, "data_dir": str(tmp_path / "data"), "health_interval_s": 0.5},
            "camera": {"source": str(video), "on_end": "loop", "realtime": True},
            "face": {"models": str(face_models)},
            "eeg": {"enabled": True, "warmup_s": 3.0},
            "lsl": {"source_id": source_id, "resolve_timeout_s": 1.0, "backoff_max_s": 1.0},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "connect_timeout_s": 2.0, "suggested_area": "Lounge"},
        }
        process = start_runtime(tmp_path, config)
        try:
            assert everything.wait_for(lambda msgs: any(
                m.topic == f"{BASE}/eeg/availability" and m.payload == b"online" for m in msgs) and any(
                m.topic == f"{BASE}/face/availability" and m.payload == b"online" for m in msgs) and any(
                m.topic.startswith(f"homeassistant/sensor/{DEVICE}/eeg_quality_") and m.payload for m in msgs) and any(
                m.topic == f"{BASE}/face/state" and json.loads(m.payload)["tracks"] for m in msgs), timeout=60), \
                output(process)[1][-3000:]
            # 1. every retained discovery config, checked against the rules
            time.sleep(1.0)
            configs = {topic: json.loads(payload) for topic, payload in
                       retained(broker.port, [f"homeassistant/+/{DEVICE}/+/config"]).items() if payload}
            published: dict[str, list[bytes]] = {}
            for m in everything.messages:
                published.setdefault(m.topic, []).append(m.payload)
            check_rule(configs, published)
            ids = {topic.split("/")[3] for topic in configs}
            assert {"face_emotion", "face_valence", "face_arousal", "face_presence", "face_count", "face_event",
                    "eeg_valence", "eeg_arousal", "fused_emotion", "fused_valence", "fused_arousal", "camera_privacy",
                    "face_enabled", "eeg_enabled", "face_score_threshold", "face_source", "eeg_source", "face_fps",
                    "spool_depth", "eeg_quality_TP9", "eeg_quality_AF8", "face_reconnects", "eeg_reconnects"} <= ids
            assert not {"eeg_emotion", "voice_emotion", "voice_valence", "voice_source"} & ids, \
                "no EEG emotion without calibrated labels, no voice entities without voice"
            face_emotion = configs[f"homeassistant/sensor/{DEVICE}/face_emotion/config"]
            assert face_emotion["device_class"] == "enum" and face_emotion["options"] == FER
            mood = configs[f"homeassistant/sensor/{DEVICE}/fused_emotion/config"]
            assert mood["name"] == "Mood" and "uncertain" in mood["options"] and "neutral" in mood["options"]
            presence = configs[f"homeassistant/binary_sensor/{DEVICE}/face_presence/config"]
            assert presence["device_class"] == "occupancy" and presence["name"] == "Face in view"
            assert configs[f"homeassistant/binary_sensor/{DEVICE}/eeg_source/config"]["device_class"] == "connectivity"
            assert face_emotion["device"]["suggested_area"] == "Lounge"
            assert configs[f"homeassistant/sensor/{DEVICE}/face_fps/config"]["unit_of_measurement"] == "fps"

            # 2. templates on real payloads: values where there is data, HA's unknown ("None") where not, never 0
            for topic, config in configs.items():
                for payload in published[config["state_topic"]][-20:]:
                    if not payload:
                        continue
                    value = render(config["value_template"], payload)
                    if topic.split("/")[1] == "binary_sensor":
                        assert value in ("ON", "OFF", "None"), (topic, value)
                    elif config.get("device_class") == "enum":
                        assert value in config["options"] or value == "None", (topic, value)
                    elif topic.split("/")[1] in ("sensor", "number"):
                        assert value == "None" or float(value) == float(value), (topic, value)
            state_of = {m: [json.loads(p) for p in published[f"{BASE}/{m}/state"] if p] for m in ("face", "eeg")}
            warming = [s for s in state_of["eeg"] if s["valence"] is None]
            assert warming, "EEG warming up is published as null"
            eeg_valence = configs[f"homeassistant/sensor/{DEVICE}/eeg_valence/config"]["value_template"]
            assert render(eeg_valence, json.dumps(warming[0]).encode()) == "None"
            assert render(presence["value_template"], json.dumps(
                next(s for s in state_of["face"] if s["tracks"])).encode()) == "ON"
            count = configs[f"homeassistant/sensor/{DEVICE}/face_count/config"]["value_template"]
            assert int(render(count, latest(everything, f"{BASE}/face/state"))) >= 0

            # 4. controls: camera privacy stops the camera and says so; a bad command is refused and logged once
            everything.messages.clear()
            mqtt_publish.single(f"emotion_edge/otherdev/set/camera_privacy", "ON", hostname="127.0.0.1",
                                port=broker.port)
            mqtt_publish.single(f"{BASE}/set/camera_privacy", "maybe", hostname="127.0.0.1", port=broker.port)
            mqtt_publish.single(f"{BASE}/set/camera_privacy", "maybe", hostname="127.0.0.1", port=broker.port)
            mqtt_publish.single(f"{BASE}/set/face_score_threshold", "7", hostname="127.0.0.1", port=broker.port)
            time.sleep(1.5)
            assert not any(json.loads(p)["paused"] for p in published_on(everything, f"{BASE}/face/state")), \
                "another device's command or a bad payload changed nothing"
            controls = json.loads(retained(broker.port, [f"{BASE}/controls"])[f"{BASE}/controls"])
            assert controls["camera_privacy"] == "OFF" and controls["face_score_threshold"] == 0.5
            stderr = output(process)[1]
            assert len(re.findall(r"refused the command on \S+/set/camera_privacy", stderr)) == 1, stderr[-2000:]
            assert "face_score_threshold must be between 0.05 and 0.95" in stderr

            mqtt_publish.single(f"{BASE}/set/camera_privacy", "ON", hostname="127.0.0.1", port=broker.port)
            assert everything.wait_for(lambda msgs: any(
                m.topic == f"{BASE}/face/state" and m.payload and json.loads(m.payload)["paused"] for m in msgs)
                and any(m.topic == f"{BASE}/face/availability" and m.payload == b"offline" for m in msgs), timeout=10)
            assert wait_for(lambda: health(everything).get("face", {}).get("camera_state") == "stopped", 5)
            paused = json.loads(latest(everything, f"{BASE}/face/state"))
            assert paused["valence"] is None and paused["tracks"] == 0
            assert everything.wait_for(lambda msgs: any(m.topic == f"{BASE}/controls" and json.loads(m.payload)
                                                        ["camera_privacy"] == "ON" for m in msgs), timeout=5)
            frames = health(everything)["face"]["frames"]
            time.sleep(1.5)
            assert health(everything)["face"]["frames"] == frames, "no frames while the privacy switch is on"

            mqtt_publish.single(f"{BASE}/set/camera_privacy", "OFF", hostname="127.0.0.1", port=broker.port)
            assert wait_for(lambda: health(everything)["face"]["frames"] > frames + 5, 15), "frames flow again"
            assert everything.wait_for(lambda msgs: [m.payload for m in msgs if m.topic == f"{BASE}/face/availability"]
                                       [-1:] == [b"online"], timeout=10)
        finally:
            pass
    # 5. the headband is gone (simulator stopped): EEG entities go unavailable, the rest stays
    try:
        assert everything.wait_for(lambda msgs: [m.payload for m in msgs if m.topic == f"{BASE}/eeg/availability"]
                                   [-1:] == [b"offline"], timeout=30), output(process)[1][-3000:]
        assert retained(broker.port, [f"{BASE}/+/availability"])[f"{BASE}/face/availability"] == b"online"
        source = configs[f"homeassistant/binary_sensor/{DEVICE}/eeg_source/config"]["value_template"]
        assert render(source, latest(everything, f"{BASE}/health")) == "OFF"
    finally:
        process.send_signal(signal.SIGTERM)
        finish(process, 30)
        kill(process)
    everything.close()
    states.close()
    assert process.returncode == 0, output(process)[1][-3000:]
    # 6. recorder rows over the run: HA writes a row when the rendered value or the attributes change. Before:
    # the emotion sensors carried the whole state as attributes, valence/arousal rendered all four decimals.
    counts = {}
    for object_id in ("face_emotion", "fused_emotion", "face_presence", "face_valence", "eeg_valence",
                      "fused_valence"):
        config = next(c for t, c in configs.items() if t.split("/")[3] == object_id)
        payloads = published_on(states, config["state_topic"])
        if object_id.endswith("_valence"):
            before = {**config, "value_template": "{{ value_json.valence }}"}
        else:
            before = {**config, "json_attributes_topic": config["state_topic"]}
        counts[object_id] = (recorder_rows(config, payloads), recorder_rows(before, payloads), len(payloads))
    print("recorder rows (now, before, state messages):", counts)
    for object_id, (now, before, _) in counts.items():
        assert now <= before, counts
    enums = [counts[object_id] for object_id in ("face_emotion", "fused_emotion", "face_presence")]
    assert sum(now for now, _, _ in enums) <= sum(before for _, before, _ in enums) / 2, counts


def recorder_rows(config: dict, payloads: list[bytes]) -> int:
    """State rows HA's recorder writes for these messages: one per change of the rendered state or of the
    attributes (json_attributes_topic on the same topic: the whole payload)."""
    rows, last = 0, None
    for payload in payloads:
        value = render(config["value_template"], payload)
        attributes = payload if config.get("json_attributes_topic") == config["state_topic"] else None
        if (value, attributes) != last:
            rows, last = rows + 1, (value, attributes)
    return rows


def published_on(subscriber: Subscriber, topic: str) -> list[bytes]:
    return [m.payload for m in subscriber.on(topic) if m.payload]


def test_the_demo_device_is_named_so_and_removed_when_it_ends(broker, face_models, tmp_path):
    video = build_demo_video(tmp_path / "faces.avi")
    watcher = Subscriber(broker.port, [f"homeassistant/+/{DEVICE}/+/config"])
    config = {
        "device": {"id": DEVICE, "data_dir": str(tmp_path / "data"), "health_interval_s": 0.5},
        "camera": {"source": str(video), "on_end": "stop", "realtime": False},
        "face": {"models": str(face_models)},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "connect_timeout_s": 2.0, "demo": True},
    }
    process = start_runtime(tmp_path, config)
    finish(process, 120)
    watcher.close()
    assert process.returncode == 0, output(process)[1][-3000:]
    shown = [json.loads(m.payload) for m in watcher.messages if m.payload]
    assert shown and all(c["device"]["name"] == f"{DEVICE} (demo)" and "demo" in c["device"]["model"] for c in shown)
    assert retained(broker.port, [f"homeassistant/+/{DEVICE}/+/config", f"{BASE}/#"]) == {}, \
        "the demo leaves no retained config or state behind"


def test_the_blueprint_is_valid_yaml_with_the_documented_inputs():
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!input", lambda loader, node: {"input": loader.construct_scalar(node)})
    blueprint = yaml.load(BLUEPRINT.read_text(), Loader=Loader)
    meta = blueprint["blueprint"]
    assert meta["domain"] == "automation" and meta["name"]
    inputs = meta["input"]
    assert {"valence_sensor", "threshold", "duration", "media_player", "music", "extra_action"} == set(inputs)
    assert inputs["valence_sensor"]["selector"]["entity"]["filter"][0]["domain"] == "sensor"
    assert inputs["threshold"]["selector"]["number"]["min"] == -1
    used = json.dumps({key: value for key, value in blueprint.items() if key != "blueprint"})
    for name in inputs:
        assert json.dumps({"input": name}) in used, f"input {name} is declared but never used"
    assert inputs["media_player"]["selector"]["entity"]["filter"][0]["domain"] == "media_player"
    trigger = blueprint["triggers"][0]
    assert trigger["trigger"] == "numeric_state" and trigger["below"] == {"input": "threshold"}
    assert trigger["for"] == {"input": "duration"}
