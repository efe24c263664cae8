"""Fusion in the running device, on real inputs: the demo video (faces), espeak-ng speech (voice) and a
simulated Muse over real LSL (EEG) -> `emotion-edge run` -> a real mosquitto.

One run covers the scenarios a home or a lab meets: all three modalities contributing, EEG not yet calibrated
(the index, low confidence, no label, null while it learns the baseline), and the headband switched off
mid-run (EEG's weight decays to 0 and the fused state says so while face and voice go on)."""

from __future__ import annotations

import json
import signal
import time

import jsonschema
import numpy as np
import soundfile

from edge.demo import build_demo_video
from edge.events import EVENT_JSON_SCHEMA
from tests.mqtt_broker import Subscriber, broker_fixture  # noqa: F401
from tests.speech import SENTENCES, speak

from .runtime_helpers import finish, output, start_runtime
from .test_runtime_eeg import simulated_muse

PREFIX = "emotion_edge/fusedev"


def payloads(subscriber, topic: str) -> list[dict]:
    return [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/{topic}") if m.payload]


def statuses(state: dict) -> dict[str, str]:
    return {modality: part["status"] for modality, part in state["contributions"].items()}


def test_face_voice_and_eeg_fuse_and_a_lost_headband_ages_out(broker, face_models, voice_models, tmp_path):
    video = build_demo_video(tmp_path / "faces.avi")
    clips = [speak(tmp_path / f"{i}.wav", SENTENCES[i], voice, wpm)[0]
             for i, (voice, wpm) in enumerate([("en-us", 140), ("en+f3", 180), ("en-us+m3", 120)])]
    audio = tmp_path / "speech.wav"
    soundfile.write(audio, np.concatenate(clips), 22050)
    subscriber = Subscriber(broker.port, [f"{PREFIX}/#"])
    with simulated_muse() as source_id:
        config = {
            "device": {"id": "fusedev", "data_dir": str(tmp_path / "data"), "health_interval_s": 1.0},
            "camera": {"source": str(video), "on_end": "loop", "realtime": True},
            "face": {"models": str(face_models)},
            "voice": {"enabled": True, "source": "file", "models": str(voice_models), "prosody_warmup_windows": 3},
            "audio_file": {"path": str(audio), "loop": True},
            "eeg": {"enabled": True, "warmup_s": 3.0},
            "lsl": {"source_id": source_id, "resolve_timeout_s": 1.0},
            "fusion": {"state_interval_s": 0.5},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "connect_timeout_s": 2.0},
        }
        process = start_runtime(tmp_path, config)

        def all_contribute(messages) -> bool:
            return any(m.topic == f"{PREFIX}/fused/state" and m.payload and set(statuses(json.loads(m.payload))
                                                                             .values()) == {"contributing"}
                       for m in messages)

        assert subscriber.wait_for(all_contribute, timeout=90), output(process)[1][-3000:]
        lost_at = time.time()
    # the headband is gone (simulator stopped); eeg.max_age_s later its weight is 0
    try:
        def eeg_aged_out(messages) -> bool:
            for m in messages:
                if m.topic == f"{PREFIX}/fused/state" and m.payload:
                    state = json.loads(m.payload)
                    parts = state["contributions"]
                    if parts["eeg"]["weight"] == 0 and parts["eeg"]["status"] in ("stale", "absent") \
                            and parts["face"]["status"] == "contributing" \
                            and state["timestamp"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(lost_at)):
                        return True
            return False

        assert subscriber.wait_for(eeg_aged_out, timeout=40), output(process)[1][-3000:]
    finally:
        process.send_signal(signal.SIGTERM)
        finish(process, 30)
    subscriber.close()
    assert process.returncode == 0, output(process)[1][-3000:]

    fused_states = payloads(subscriber, "fused/state")
    together = next(s for s in fused_states if set(statuses(s).values()) == {"contributing"})
    assert together["valence"] is not None and together["arousal"] is not None and together["confidence"] > 0
    assert abs(sum(part["weight"] for part in together["contributions"].values()) - 1.0) < 1e-3
    gone = [s for s in fused_states if s["contributions"]["eeg"]["status"] in ("stale", "absent")][-1]
    assert gone["contributions"]["eeg"]["valence"] is None and gone["contributions"]["eeg"]["arousal"] is None

    events = payloads(subscriber, "fused/event")
    assert events, "no fused event"
    for event in events + payloads(subscriber, "eeg/event") + payloads(subscriber, "voice/event"):
        jsonschema.validate(event, EVENT_JSON_SCHEMA)
    assert all(set(event["contributions"]) == {"face", "voice", "eeg"} for event in events)

    eeg_states = payloads(subscriber, "eeg/state")
    learning = [s for s in eeg_states if s.get("warming_up") is not None and s["valence"] is None]
    assert learning, "EEG's baseline warm-up is published as null, never as 0"
    indexed = [s for s in eeg_states if s["valence"] is not None]
    assert indexed and all(s["estimator"] == "index" and s["uncalibrated"] is True and s["label"] is None
                           and s["confidence"] <= 0.3 for s in indexed)
    voice_states = [s for s in payloads(subscriber, "voice/state") if s["arousal"] is not None]
    assert voice_states and all(s["label"] is None and s["valence"] is None for s in voice_states), \
        "the 4-class voice model names no label (and so no valence) on plain speech"
