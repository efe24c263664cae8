"""Voice through the whole runtime: real speech files -> `emotion-edge run` -> real mosquitto."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import soundfile

from edge.events import EVENT_JSON_SCHEMA
from tests.mqtt_broker import Subscriber, broker_fixture  # noqa: F401
from tests.speech import SENTENCES, speak

from .runtime_helpers import finish, printed_events, start_runtime

PREFIX = "emotion_edge/voicedev"


def voice_config(tmp_path, port, models, audio) -> dict:
    return {
        "device": {"id": "voicedev", "data_dir": str(tmp_path / "data"), "health_interval_s": 0.5},
        "face": {"enabled": False},
        "voice": {"enabled": True, "source": "file", "models": str(models)},
        "audio_file": {"path": str(audio), "realtime": False},
        "mqtt": {"host": "127.0.0.1", "port": port, "connect_timeout_s": 2.0},
    }


def test_speech_file_is_analysed_but_never_labelled_by_the_4_class_model(broker, voice_models, tmp_path):
    """Plain speech through the runtime: every speech window is classified, none is given one of the
    4-class model's labels (its calibrated voice.label_threshold is 1.0, docs/voice.md), so no voice
    event carries "disgust" for synthetic speech; Home Assistant still gets the voice entities."""
    clips = [speak(tmp_path / f"{i}.wav", SENTENCES[i], voice, wpm)[0]
             for i, (voice, wpm) in enumerate([("en-us", 140), ("en+f3", 180), ("en-us+m3", 120)])]
    gap = np.zeros(int(22050 * 1.5), np.float32)
    audio = tmp_path / "speech.wav"
    soundfile.write(audio, np.concatenate([clips[0], gap, clips[1], gap, clips[2]]), 22050)
    subscriber = Subscriber(broker.port, [f"{PREFIX}/#", "homeassistant/#"])
    process = start_runtime(tmp_path, voice_config(tmp_path, broker.port, voice_models, audio))
    stdout, stderr = finish(process)
    assert process.returncode == 0, stderr[-3000:]
    assert subscriber.wait_for(lambda m: any(x.topic.endswith("/health") for x in m), timeout=30)
    health = json.loads(subscriber.on(f"{PREFIX}/health")[-1].payload)["voice"]
    assert health["classified"] >= 5 and health["labelled"] == 0 and health["uncertain"] == health["classified"]
    for event in [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/voice/event")]:
        jsonschema.validate(event, EVENT_JSON_SCHEMA)
        assert event["modality"] == "voice" and event["label"] is None
    assert all(event.get("label") is None for event in printed_events(stdout) if event.get("modality") == "voice")
    states = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/voice/state")]
    heard = [s for s in states if s["arousal"] is not None]
    assert heard, "prosodic arousal once the speaker's baseline has a few windows"
    assert all(s["label"] is None and s["valence"] is None and s["estimator"] == "prosody" for s in heard)
    assert subscriber.wait_for(lambda m: any("/voice" in x.topic and x.topic.startswith("homeassistant/sensor")
                                             for x in m), timeout=30)
    subscriber.close()


def test_silence_yields_no_voice_events(broker, voice_models, tmp_path):
    audio = tmp_path / "silence.wav"
    rng = np.random.default_rng(0)
    soundfile.write(audio, (rng.normal(0, 1e-4, 22050 * 8)).astype(np.float32), 22050)
    subscriber = Subscriber(broker.port, [f"{PREFIX}/#"])
    process = start_runtime(tmp_path, voice_config(tmp_path, broker.port, voice_models, audio))
    stdout, stderr = finish(process)
    assert process.returncode == 0, stderr[-3000:]
    assert printed_events(stdout) == []
    assert subscriber.wait_for(lambda m: any(x.topic.endswith("/health") for x in m), timeout=30)
    health = json.loads(subscriber.on(f"{PREFIX}/health")[-1].payload)["voice"]
    assert health["windows"] >= 5 and health["classified"] == 0 and health["silence"] >= 5
    assert subscriber.on(f"{PREFIX}/voice/event") == []
    subscriber.close()
