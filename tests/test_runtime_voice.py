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


def test_speech_file_gives_voice_events_on_the_shared_topics(broker, voice_models, tmp_path):
    clips = [speak(tmp_path / f"{i}.wav", SENTENCES[i], voice, wpm)[0]
             for i, (voice, wpm) in enumerate([("en-us", 140), ("en+f3", 180), ("en-us+m3", 120)])]
    gap = np.zeros(int(22050 * 1.5), np.float32)
    audio = tmp_path / "speech.wav"
    soundfile.write(audio, np.concatenate([clips[0], gap, clips[1], gap, clips[2]]), 22050)
    subscriber = Subscriber(broker.port, [f"{PREFIX}/#", "homeassistant/#"])
    process = start_runtime(tmp_path, voice_config(tmp_path, broker.port, voice_models, audio))
    stdout, stderr = finish(process)
    assert process.returncode == 0, stderr[-3000:]
    printed = printed_events(stdout)
    assert subscriber.wait_for(lambda m: len([x for x in m if x.topic.endswith("voice/event")]) >= len(printed)
                               and any(x.topic.endswith("/health") and "voice" in json.loads(x.payload) for x in m),
                               timeout=30), stderr[-2000:]
    events = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/voice/event")]
    for event in events:
        jsonschema.validate(event, EVENT_JSON_SCHEMA)
        assert event["modality"] == "voice" and event["kind"] == "emotion"
        assert event["label"] in ("calm", "happy", "fearful", "disgust", None)  # None: no longer sure of one
        assert event["model"]["id"].startswith("voice-") and event["extra"]["vad"]["speech_fraction"] > 0
    labels = [e["label"] for e in events]
    assert all(a != b for a, b in zip(labels, labels[1:])), "an event is published when the label changes"
    states = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/voice/state")]
    heard = [s for s in states if s["arousal"] is not None]
    assert heard, "prosodic arousal once the speaker's baseline has a few windows"
    # the default 4-class model has no neutral class: on plain speech it names no label, so no valence either
    assert all(s["label"] is None and s["valence"] is None and s["estimator"] == "prosody" for s in heard)
    assert subscriber.wait_for(lambda m: any("/voice" in x.topic and x.topic.startswith("homeassistant/sensor")
                                             for x in m), timeout=30)
    health = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/health")]
    assert health[-1]["voice"]["classified"] >= len(heard) and health[-1]["voice"]["uncertain"] > 0
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
