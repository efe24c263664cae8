"""Event identity across restarts: `id` = <device>-<run>-<seq> with a run counter kept in the data dir."""

from __future__ import annotations

import json

import jsonschema
import pytest

from edge.demo import build_demo_video
from edge import events
from edge.errors import EdgeError
from edge.events import EVENT_JSON_SCHEMA, RUN_FILENAME, start_run
from tests.mqtt_broker import Subscriber, broker_fixture  # noqa: F401

from .runtime_helpers import finish, printed_events, runtime_config, start_runtime

PREFIX = "emotion_edge/testdev"


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    return build_demo_video(tmp_path_factory.mktemp("video") / "demo.avi")


def test_ids_stay_unique_across_a_restart_and_dedup_by_id_keeps_every_event(broker, face_models, demo_video,
                                                                             tmp_path):
    """Two runs on one data dir: `seq` starts at 1 again, so a hub de-duplicating by seq drops real events of
    the second run (the reported bug); by `id` it keeps every one."""
    subscriber = Subscriber(broker.port, [f"{PREFIX}/face/event"])
    config = runtime_config(tmp_path, face_models, demo_video, broker.port)  # unpaced file, stops at its end
    printed = []
    for _ in range(2):
        process = start_runtime(tmp_path, config)
        stdout, stderr = finish(process)
        assert process.returncode == 0, stderr[-3000:]
        printed += printed_events(stdout)
    assert subscriber.wait_for(lambda msgs: len(msgs) >= len(printed), timeout=30)
    events = [json.loads(message.payload) for message in subscriber.messages]
    subscriber.close()
    for event in events:
        jsonschema.validate(event, EVENT_JSON_SCHEMA)
        assert event["id"] == f"testdev-{event['run']}-{event['seq']}"
    assert {event["run"] for event in events} == {1, 2}
    real = {event["id"] for event in printed}
    assert len(real) == len(printed), "two events printed by the runtime share an id"
    by_id = {event["id"]: event for event in events}
    assert set(by_id) == real  # dedup by id: every real event kept, none invented
    by_seq = {event["seq"]: event for event in events}
    assert len(by_seq) < len(real)  # the old rule loses events after a restart
    by_run_seq = {(event["run"], event["seq"]) for event in events}
    assert len(by_run_seq) == len(real)


def test_run_counter_rises_on_every_start_and_a_garbled_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(events, "_run", events._run)  # restored afterwards: later tests see no run set
    assert [start_run(tmp_path) for _ in range(3)] == [1, 2, 3]
    assert (tmp_path / RUN_FILENAME).read_text() == "3\n"
    assert [p.name for p in tmp_path.iterdir()] == [RUN_FILENAME]  # no temporary left behind
    (tmp_path / RUN_FILENAME).write_text("x7")
    with pytest.raises(EdgeError, match=f"run counter {tmp_path / RUN_FILENAME} holds 'x7', not a number"):
        start_run(tmp_path)
