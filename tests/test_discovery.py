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
from edge.publish import MqttConfig, MqttPublisher, Topics
from edge.publish.discovery import discovery_messages

REQUIRED_DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version"}


def configs(messages):
    return {topic: json.loads(payload) for topic, payload in messages if payload}


def test_payloads_carry_what_home_assistant_requires():
    topics = Topics("emotion_edge", "kiosk-1")
    messages = discovery_messages("kiosk-1", ["face", "eeg"], topics, "homeassistant")
    enabled = configs(messages)
    removed = [topic for topic, payload in messages if not payload]
    node = "kiosk-1"
    for modality in ("face", "eeg"):
        for component, object_id in [("sensor", "emotion"), ("sensor", "valence"), ("sensor", "arousal"),
                                     ("event", "event")]:
            assert f"homeassistant/{component}/{node}/{modality}_{object_id}/config" in enabled
    # voice and fusion are not enabled: their four entities each are removed with empty retained payloads
    assert sorted(removed) == sorted(f"homeassistant/{c}/{node}/{m}_{o}/config" for m in ("voice", "fused")
                                     for c, o in [("sensor", "emotion"), ("sensor", "valence"),
                                                  ("sensor", "arousal"), ("event", "event")])
    assert "homeassistant/sensor/kiosk-1/cpu_temperature/config" in enabled
    unique_ids = [c["unique_id"] for c in enabled.values()]
    assert len(unique_ids) == len(set(unique_ids)) == 9
    for payload in enabled.values():
        assert payload["availability_topic"] == "emotion_edge/kiosk-1/availability"
        assert payload["payload_available"] == "online" and payload["payload_not_available"] == "offline"
        assert REQUIRED_DEVICE_KEYS <= set(payload["device"])
        assert payload["device"]["identifiers"] == ["emotion_edge_kiosk-1"]
        assert payload["device"]["sw_version"] == __version__
        assert payload["state_topic"].startswith("emotion_edge/kiosk-1/") and payload["value_template"]
        assert payload["name"]
    face = enabled["homeassistant/sensor/kiosk-1/face_emotion/config"]
    assert face["state_topic"] == face["json_attributes_topic"] == "emotion_edge/kiosk-1/face/state"
    event = enabled["homeassistant/event/kiosk-1/eeg_event/config"]
    assert event["state_topic"] == "emotion_edge/kiosk-1/eeg/event" and event["event_types"] == list(KINDS)
    assert configs(discovery_messages("a b.c", ["face"], Topics("p", "a b.c"), "ha")).keys() >= {
        "ha/sensor/a_b_c/face_emotion/config"}  # node ids are sanitised to HA's character set


def test_value_templates_render_against_real_payloads():
    """Render the templates with Jinja2 the way HA does (value_json plus HA's to_json filter)."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    env.filters["to_json"] = json.dumps
    topics = Topics("emotion_edge", "d")
    enabled = configs(discovery_messages("d", ["voice"], topics))

    def render(object_id, value_json):
        template = enabled[f"homeassistant/{'event' if object_id.endswith('event') else 'sensor'}/d/{object_id}"
                           "/config"]["value_template"]
        return env.from_string(template).render(value_json=value_json)

    state = {"label": "angry", "confidence": 0.81, "valence": -0.51, "arousal": 0.59,
             "timestamp": utc_timestamp(), "track_id": "mic", "tracks": 1}
    assert render("voice_emotion", state) == "angry"
    assert float(render("voice_valence", state)) == -0.51
    assert float(render("voice_arousal", state)) == 0.59
    event = Event(device_id="d", modality="voice", kind="emotion", track_id="mic", label="angry", confidence=0.81,
                  probabilities={"angry": 0.81}, valence=-0.51, arousal=0.59, timestamp=utc_timestamp(),
                  model={"id": "m", "sha256": "s", "estimator": "classifier"}, latency_ms=3.0)
    rendered = json.loads(render("voice_event", event.to_dict()))
    assert rendered["event_type"] == "emotion" and rendered["event_type"] in KINDS
    assert rendered["label"] == "angry" and rendered["timestamp"] == event.timestamp
    ended = dict(event.to_dict(), kind="track_end", label=None)
    assert json.loads(render("voice_event", ended)) == {**rendered, "event_type": "track_end", "label": None}


def test_discovery_published_retained_and_resent_when_home_assistant_comes_online(broker, tmp_path):
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, discovery=True, connect_timeout_s=3.0)
    pub = MqttPublisher(cfg, "dev1", ["face", "voice"], tmp_path / "spool")
    pub.start()
    ha = None
    try:
        ha = Subscriber(broker.port, ["homeassistant/#"])  # subscribes after discovery: sees retained copies
        wanted = {t for t, _ in discovery_messages("dev1", ["face", "voice"], pub.topics)}
        assert ha.wait_for(lambda msgs: {m.topic for m in msgs} >= wanted - {
            t for t, p in discovery_messages("dev1", ["face", "voice"], pub.topics) if not p}, 3)
        late = Subscriber(broker.port, ["homeassistant/#"])  # everything is on the broker by now
        enabled = {t for t, p in discovery_messages("dev1", ["face", "voice"], pub.topics) if p}
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
        assert json.loads(resent["homeassistant/sensor/dev1/face_emotion/config"])["unique_id"] == \
            "emotion_edge_dev1_face_emotion"
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
from edge.publish.discovery import discovery_messages
from edge.publish.topics import Topics
messages = discovery_messages("kiosk-1", ["face"], Topics("emotion_edge", "kiosk-1"))
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
