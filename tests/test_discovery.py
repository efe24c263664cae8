"""Home Assistant discovery: payload content, template rendering, and the re-send on HA's birth message."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.mqtt_broker import Subscriber, broker_fixture  # noqa: F401 (the `broker` fixture)

from edge import __version__
from edge.events import KINDS, Event, utc_timestamp
from edge.health import cpu_temperature_c
from edge.publish import MqttConfig, MqttPublisher, Topics
from edge.publish.discovery import DeviceInfo, discovery_messages

REQUIRED_DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version"}
FER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def configs(messages):
    return {topic: json.loads(payload) for topic, payload in messages if payload}


def info(device_id="kiosk-1", modalities=("face", "eeg"), **kwargs) -> DeviceInfo:
    return DeviceInfo(device_id, tuple(modalities), **{"labels": {"face": FER, "eeg": ()}, **kwargs})


def test_payloads_carry_what_home_assistant_requires():
    topics = Topics("emotion_edge", "kiosk-1")
    messages = discovery_messages(info(), topics, "homeassistant")
    enabled = configs(messages)
    removed = {topic for topic, payload in messages if not payload}
    node = "kiosk-1"
    for object_id in ("face_emotion", "face_valence", "face_arousal", "eeg_valence", "eeg_arousal"):
        assert f"homeassistant/sensor/{node}/{object_id}/config" in enabled
    assert f"homeassistant/event/{node}/face_event/config" in enabled
    # EEG's index has no labels: no enum entity that could never have a value; voice and fusion are off
    assert {f"homeassistant/sensor/{node}/eeg_emotion/config", f"homeassistant/sensor/{node}/voice_valence/config",
            f"homeassistant/sensor/{node}/fused_emotion/config", f"homeassistant/event/{node}/voice_event/config",
            f"homeassistant/binary_sensor/{node}/voice_source/config"} <= removed
    # no CPU temperature entity unless the board reports one; electrodes only once the stream named them
    assert f"homeassistant/sensor/{node}/cpu_temperature/config" in removed
    assert f"homeassistant/sensor/{node}/eeg_quality_TP9/config" in removed
    assert f"homeassistant/sensor/{node}/cpu_temperature/config" in configs(
        discovery_messages(info(), topics, cpu_temperature=True))
    unique_ids = [c["unique_id"] for c in enabled.values()]
    assert len(unique_ids) == len(set(unique_ids))
    for payload in enabled.values():
        assert [a["topic"] for a in payload["availability"]][0] == "emotion_edge/kiosk-1/availability"
        assert payload["availability_mode"] == "all"
        assert REQUIRED_DEVICE_KEYS <= set(payload["device"])
        assert payload["device"]["identifiers"] == ["emotion_edge_kiosk-1"]
        assert payload["device"]["name"] == "kiosk-1", "the device id once, not 'Emotion edge kiosk-1'"
        assert payload["device"]["sw_version"] == __version__
        assert payload["state_topic"].startswith("emotion_edge/kiosk-1/") and payload["value_template"]
        assert payload["name"]
    face = enabled["homeassistant/sensor/kiosk-1/face_emotion/config"]
    assert face["state_topic"] == "emotion_edge/kiosk-1/face/state" and "json_attributes_topic" not in face
    assert face["device_class"] == "enum" and face["options"] == list(FER)
    assert [a["topic"] for a in face["availability"]] == ["emotion_edge/kiosk-1/availability",
                                                          "emotion_edge/kiosk-1/face/availability"]
    event = enabled["homeassistant/event/kiosk-1/eeg_event/config"]
    assert event["state_topic"] == "emotion_edge/kiosk-1/eeg/event" and event["event_types"] == ["emotion"]
    assert configs(discovery_messages(info("a b.c", ["face"]), Topics("p", "a b.c"), "ha")).keys() >= {
        "ha/sensor/a_b_c/face_emotion/config"}  # node ids are sanitised to HA's character set
    named = configs(discovery_messages(info(name="Kitchen", area="Kitchen", configuration_url="http://k:8765/",
                                            hardware="Raspberry Pi 5 Model B Rev 1.0"), topics))
    device = named["homeassistant/sensor/kiosk-1/face_valence/config"]["device"]
    assert device["name"] == "Kitchen" and device["suggested_area"] == "Kitchen"
    assert device["configuration_url"] == "http://k:8765/" and device["hw_version"].startswith("Raspberry Pi")
    assert all(payload == "" for _, payload in discovery_messages(info(), topics, remove=True))


def test_value_templates_render_against_real_payloads():
    """Render the templates with Jinja2's immutable sandbox the way HA does (value_json plus HA's to_json
    filter); null renders as "None", which HA takes as unknown."""
    jinja2 = pytest.importorskip("jinja2.sandbox")
    env = jinja2.ImmutableSandboxedEnvironment()
    env.filters["to_json"] = json.dumps
    topics = Topics("emotion_edge", "d")
    voice = ("angry", "happy", "neutral", "sad")
    enabled = configs(discovery_messages(DeviceInfo("d", ("voice",), labels={"voice": voice},
                                                    uncertain=frozenset({"voice"})), topics))

    def render(object_id, value_json):
        component = "event" if object_id.endswith("event") else "sensor"
        template = enabled[f"homeassistant/{component}/d/{object_id}/config"]["value_template"]
        return env.from_string(template).render(value_json=value_json)

    assert enabled["homeassistant/sensor/d/voice_emotion/config"]["options"] == [*voice, "uncertain"]
    state = {"label": "angry", "confidence": 0.81, "valence": -0.51, "arousal": 0.59,
             "timestamp": utc_timestamp(), "track_id": "mic", "tracks": 1}
    assert render("voice_emotion", state) == "angry"
    assert float(render("voice_valence", state)) == -0.51
    assert float(render("voice_arousal", state)) == 0.59
    unsure = dict(state, label=None, valence=None)
    assert render("voice_emotion", unsure) == "uncertain" and render("voice_valence", unsure) == "None"
    empty = dict(state, label=None, confidence=None, valence=None, arousal=None)
    assert render("voice_emotion", empty) == "None" and render("voice_arousal", empty) == "None"
    event = Event(device_id="d", modality="voice", kind="emotion", track_id="mic", label="angry", confidence=0.81,
                  probabilities={"angry": 0.81}, valence=-0.51, arousal=0.59, timestamp=utc_timestamp(),
                  model={"id": "m", "sha256": "s", "estimator": "classifier"}, latency_ms=3.0)
    rendered = json.loads(render("voice_event", event.to_dict()))
    assert rendered["event_type"] == "emotion" and rendered["event_type"] in KINDS
    assert rendered["label"] == "angry" and rendered["valence"] == -0.51
    ended = dict(event.to_dict(), kind="track_end", label=None)
    assert render("voice_event", ended) == "", "track churn is not offered to HA (empty: ignored)"


def test_discovery_published_retained_and_resent_when_home_assistant_comes_online(broker, tmp_path):
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, discovery=True, connect_timeout_s=3.0)
    pub = MqttPublisher(cfg, "dev1", ["face", "voice"], tmp_path / "spool")
    pub.start()
    ha = None
    try:
        ha = Subscriber(broker.port, ["homeassistant/#"])  # subscribes after discovery: sees retained copies
        messages = discovery_messages(pub.info, pub.topics, cpu_temperature=cpu_temperature_c() is not None)
        wanted = {t for t, _ in messages}
        assert ha.wait_for(lambda msgs: {m.topic for m in msgs} >= wanted - {t for t, p in messages if not p}, 3)
        late = Subscriber(broker.port, ["homeassistant/#"])  # everything is on the broker by now
        enabled = {t for t, p in messages if p}
        assert late.wait_for(lambda msgs: {m.topic for m in msgs} >= enabled, 3)
        late.close()
        assert all(m.retain for m in late.messages)
        assert pub.stats()["discovery_published"] == 1
        count_before = len(ha.messages)

        ha.client.publish("homeassistant/status", "online", qos=1)  # HA's birth message
        assert ha.wait_for(lambda msgs: len([m for m in msgs[count_before:] if m.topic.endswith("/config")])
                           >= len(wanted), 3)
        resent = {m.topic: m.payload for m in ha.messages[count_before:] if m.topic.endswith("/config")}
        assert set(resent) == wanted
        assert json.loads(resent["homeassistant/sensor/dev1/face_valence/config"])["unique_id"] == \
            "emotion_edge_dev1_face_valence"
        assert resent["homeassistant/sensor/dev1/eeg_emotion/config"] == b""
        assert pub.stats()["discovery_published"] == 2

        count_before = len(ha.messages)
        ha.client.publish("homeassistant/status", "offline", qos=1)
        time.sleep(0.5)
        assert not [m for m in ha.messages[count_before:] if m.topic.endswith("/config")]
    finally:
        pub.stop()
        if ha:
            ha.close()


def test_discovery_off_publishes_nothing(broker, tmp_path):
    ha = Subscriber(broker.port, ["homeassistant/#"])
    pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=broker.port, discovery=False), "dev1", ["face"],
                        tmp_path / "spool")
    pub.start()
    try:
        assert pub.is_connected()
        ha.client.publish("homeassistant/status", "online", qos=1)
        # The broker has delivered the announcement (ha hears its own publish); a publisher with discovery on
        # would answer within milliseconds, so a further pause shows none came.
        assert ha.wait_for(lambda msgs: any(m.topic == "homeassistant/status" for m in msgs), 5)
        time.sleep(0.5)
        assert [m.topic for m in ha.messages] == ["homeassistant/status"]
    finally:
        pub.stop()
        ha.close()


DISCOVERY_WITHOUT_TRANSPORT = """
import sys
sys.modules["paho"] = None  # the transport cannot be imported
from edge.publish.discovery import DeviceInfo, discovery_messages
from edge.publish.topics import Topics
messages = discovery_messages(DeviceInfo("kiosk-1", ("face",)), Topics("emotion_edge", "kiosk-1"))
assert "edge.publish.mqtt" not in sys.modules
print(len(messages))
"""


def test_discovery_and_topics_do_not_import_the_transport():
    """Topic naming lives in edge/publish/topics.py: discovery imports it, not mqtt.py (no import cycle), and the
    old name `edge.publish.mqtt.Topics` is the same class."""
    done = subprocess.run([sys.executable, "-c", DISCOVERY_WITHOUT_TRANSPORT], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert done.returncode == 0 and int(done.stdout) > 0, done.stderr[-2000:]
    from edge.publish import mqtt, topics
    assert mqtt.Topics is topics.Topics is Topics


def test_home_assistant_settings_are_validated():
    from edge.errors import EdgeError

    with pytest.raises(EdgeError, match=r"mqtt.expire_after_s must be 0 \(automatic\) or more seconds"):
        MqttConfig(expire_after_s=-1).validate()
    with pytest.raises(EdgeError, match="mqtt.device_name must be at most 64 printable characters"):
        MqttConfig(device_name="x" * 65).validate()
    MqttConfig(device_name="Living room", suggested_area="Living room", demo=True).validate()
