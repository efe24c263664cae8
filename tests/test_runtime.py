"""The runtime end to end: demo video -> face pipeline -> real mosquitto, as a subscriber and a hub see it."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime

import jsonschema
import numpy as np
import pytest

from edge.demo import FPS, SECONDS, build_demo_video
from edge.events import EVENT_JSON_SCHEMA
from tests.mqtt_broker import Broker, Subscriber, broker_fixture  # noqa: F401

from .runtime_helpers import finish, kill, printed_events, runtime_config, start_runtime

PREFIX = "emotion_edge/testdev"


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    return build_demo_video(tmp_path_factory.mktemp("video") / "demo.avi")


def test_demo_video_events_reach_a_subscriber(broker, face_models, demo_video, tmp_path):
    subscriber = Subscriber(broker.port, [f"{PREFIX}/#", "homeassistant/#"])
    # Paced like `run --demo` (the unpaced, video-time run has its own test below). Paced, a slow machine may drop
    # frames, so frames are checked as an exact account (processed + dropped), not as a rate.
    config = runtime_config(tmp_path, face_models, demo_video, broker.port, camera={"realtime": True})
    process = start_runtime(tmp_path, config)
    stdout, stderr = finish(process)
    assert process.returncode == 0, stderr[-3000:]
    printed = printed_events(stdout)
    assert subscriber.wait_for(lambda msgs: len([m for m in msgs if m.topic.endswith("face/event")]) >= len(printed),
                               timeout=30)
    received = subscriber.on(f"{PREFIX}/face/event")
    events = [json.loads(message.payload) for message in received]
    for message, event in zip(received, events):
        jsonschema.validate(event, EVENT_JSON_SCHEMA)
        assert message.qos == 1 and not message.retain
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events) == [e["seq"] for e in printed]
    kinds = {e["kind"] for e in events}
    assert kinds == {"track_start", "emotion", "track_end"}
    tracks = [e["track_id"] for e in events if e["kind"] == "track_start"]
    assert len(tracks) == 3, tracks  # the demo shows one, two, then three faces
    ended = {e["track_id"] for e in events if e["kind"] == "track_end"}
    assert ended == set(tracks)
    # The first face is the smiling astronaut: its first emotion is happy, with valence above zero.
    first = next(e for e in events if e["kind"] == "emotion" and e["track_id"] == tracks[0])
    assert first["label"] == "happy" and first["valence"] > 0.5
    assert first["model"]["sha256"] and first["model"]["estimator"] == "classifier"
    states = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/face/state")]
    assert any(state["label"] == "happy" and state["track_id"] == tracks[0] for state in states)
    assert states[-1]["tracks"] == 0 or states[-1]["label"] is None
    health = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/health")]
    assert health
    face = health[-1]["face"]
    assert face["frames"] > 0 and face["frames"] + face["dropped_frames"] == FPS * SECONDS  # every frame accounted for
    assert set(health[-1]["face"]["stages"]) >= {"detect", "classify", "publish", "total"}
    subscriber.close()

    late = Subscriber(broker.port, [f"{PREFIX}/#", "homeassistant/#"])
    assert late.wait_for(lambda msgs: any(m.topic == f"{PREFIX}/availability" for m in msgs), timeout=30)
    assert late.on(f"{PREFIX}/availability")[-1].payload == b"offline"
    assert late.on(f"{PREFIX}/availability")[-1].retain
    assert late.wait_for(lambda msgs: any(m.topic.startswith("homeassistant/") for m in msgs), timeout=30)
    late.close()


def test_unpaced_file_runs_on_video_time(broker, face_models, demo_video, tmp_path):
    """Processed as fast as the machine goes, a file is still judged on its own timeline: the same tracks and
    labels as the paced demo, event times spread over the video's length, and the same story on every run."""
    def story():
        config = runtime_config(tmp_path, face_models, demo_video, broker.port)  # unpaced, stops at the end
        process = start_runtime(tmp_path, config)
        stdout, stderr = finish(process)
        assert process.returncode == 0, stderr[-3000:]
        events = [e for e in printed_events(stdout) if e["modality"] == "face"]
        times = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp() for e in events]
        return events, [round(t - times[0], 3) for t in times]

    events, offsets = story()
    tracks = [e["track_id"] for e in events if e["kind"] == "track_start"]
    assert len(tracks) == 3, tracks
    first = next(e for e in events if e["kind"] == "emotion" and e["track_id"] == tracks[0])
    assert first["label"] == "happy" and first["valence"] > 0.5
    assert offsets == sorted(offsets) and offsets[-1] > SECONDS * 0.6  # video seconds, not decode seconds
    again, offsets_again = story()
    assert [(e["kind"], e["track_id"], e["label"]) for e in again] == [(e["kind"], e["track_id"], e["label"])
                                                                      for e in events]
    # event times are printed to the millisecond, so offsets from two start times may differ by one rounding step
    assert np.allclose(offsets_again, offsets, rtol=0, atol=0.0015)


def test_frames_never_reach_the_disk(broker, face_models, demo_video, tmp_path):
    process = start_runtime(tmp_path, runtime_config(tmp_path, face_models, demo_video, broker.port))
    finish(process)
    written = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    # besides the spool only the lock (holding a PID) and the run counter (a number)
    counters = ("lock", "run", "run.0", "run.1")
    assert written and all(p.parent.name == "spool" or p.name in counters for p in written), written
    assert not any(p.suffix.lower() in (".jpg", ".png", ".avi", ".wav", ".npy") for p in written)


def test_availability_turns_offline_when_the_runtime_is_killed(broker, face_models, demo_video, tmp_path):
    config = runtime_config(tmp_path, face_models, demo_video, broker.port,
                            camera={"on_end": "loop", "realtime": True}, mqtt={"keepalive": 2})
    process = start_runtime(tmp_path, config)
    try:
        watcher = Subscriber(broker.port, [f"{PREFIX}/availability"])
        assert watcher.wait_for(lambda msgs: any(m.payload == b"online" for m in msgs), timeout=30)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert watcher.wait_for(lambda msgs: msgs[-1].payload == b"offline", timeout=10)
        watcher.close()
        fresh = Subscriber(broker.port, [f"{PREFIX}/availability"])
        assert fresh.wait_for(lambda msgs: bool(msgs), timeout=30)
        assert fresh.messages[-1].payload == b"offline" and fresh.messages[-1].retain
        fresh.close()
    finally:
        kill(process)


def test_broker_restart_mid_run_loses_no_event(face_models, demo_video, tmp_path):
    broker = Broker(tmp_path, persistence=True).start()
    subscriber = Subscriber(broker.port, [f"{PREFIX}/face/event"], client_id="hub", persistent=True)
    config = runtime_config(tmp_path, face_models, demo_video, broker.port, camera={"on_end": "loop"})
    process = start_runtime(tmp_path, config)
    try:
        assert subscriber.wait_for(lambda msgs: len(msgs) >= 3, timeout=60)
        broker.stop()
        time.sleep(4)  # the runtime keeps seeing faces and spools their events
        broker.start()
        time.sleep(4)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = finish(process, 60)
        assert process.returncode == 0, stderr[-3000:]
        printed = printed_events(stdout)
        during_outage = len(printed)
        assert during_outage > 6
        want = [event["seq"] for event in printed]
        assert subscriber.wait_for(lambda msgs: {json.loads(m.payload)["seq"] for m in msgs} >= set(want), timeout=30), \
            sorted(set(want) - {json.loads(m.payload)["seq"] for m in subscriber.messages})
        received = {}
        for message in subscriber.messages:
            event = json.loads(message.payload)
            received.setdefault(event["seq"], event)
        assert sorted(received) == want  # nothing lost, and at-least-once duplicates collapse by seq
        assert all(received[e["seq"]]["timestamp"] == e["timestamp"] for e in printed), "original timestamps kept"
    finally:
        kill(process)
        subscriber.close()
        broker.stop()


def test_runtime_survives_a_camera_that_disappears(broker, face_models, demo_video, tmp_path):
    import shutil

    video = tmp_path / "camera.avi"
    shutil.copyfile(demo_video, video)
    config = runtime_config(tmp_path, face_models, video, broker.port, camera={"on_end": "loop", "realtime": True,
                                                                                "reconnect_max_s": 0.5})
    health = Subscriber(broker.port, [f"{PREFIX}/health"])
    process = start_runtime(tmp_path, config)
    try:
        def camera_state(state):
            return lambda msgs: bool(msgs) and json.loads(msgs[-1].payload)["face"]["camera_state"] == state

        assert health.wait_for(camera_state("running"), timeout=30)
        video.unlink()
        assert health.wait_for(camera_state("reconnecting"), timeout=30)
        assert process.poll() is None
        shutil.copyfile(demo_video, video)
        assert health.wait_for(camera_state("running"), timeout=30)
        last = json.loads(health.messages[-1].payload)
        assert last["face"]["camera_reconnects"] >= 1
        frames_before = last["face"]["frames"]
        assert health.wait_for(lambda msgs: json.loads(msgs[-1].payload)["face"]["frames"] > frames_before + 10,
                               timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        kill(process)
        health.close()
