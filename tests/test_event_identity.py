"""Event identity across restarts: `id` = <device>-<run>-<seq> with a run counter kept in the data dir."""

from __future__ import annotations

import json
import os
import zlib

import jsonschema
import pytest

from edge.demo import build_demo_video
from edge import events
from edge.errors import EdgeError
from edge.events import EVENT_JSON_SCHEMA, RUN_FILENAME, RUN_SLOTS, SLOT_SIZE, read_slot, start_run
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


def test_run_counter_rises_on_every_start_in_two_alternating_slots(tmp_path, monkeypatch):
    monkeypatch.setattr(events, "_run", events._run)  # restored afterwards: later tests see no run set
    assert [start_run(tmp_path) for _ in range(4)] == [1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == list(RUN_SLOTS)  # no temporary left behind
    assert sorted(read_slot(tmp_path / name) for name in RUN_SLOTS) == [3, 4]  # the last two, one per slot
    assert all((tmp_path / name).stat().st_size == SLOT_SIZE for name in RUN_SLOTS)


def test_a_torn_or_garbage_slot_is_ignored_and_rewritten(tmp_path, monkeypatch):
    """A power cut while a slot is written tears only that slot, which held the older number: the other one
    still holds the last run, so no number is handed out twice."""
    monkeypatch.setattr(events, "_run", events._run)
    assert [start_run(tmp_path) for _ in range(3)] == [1, 2, 3]
    newest = max(RUN_SLOTS, key=lambda name: read_slot(tmp_path / name))
    older = next(name for name in RUN_SLOTS if name != newest)
    torn = _slot_bytes(4)[:25] + (tmp_path / older).read_bytes()[25:]  # "4" written over "2", cut in its CRC
    for garbage in (torn, b"\0" * SLOT_SIZE, b"x", _slot_bytes(99).replace(b"99", b"98", 1)):
        (tmp_path / older).write_bytes(garbage)
        assert read_slot(tmp_path / older) is None
        assert start_run(tmp_path) == read_slot(tmp_path / newest) + 1 == 4
        assert read_slot(tmp_path / older) == 4  # the bad slot took the new number
        (tmp_path / older).write_bytes(_slot_bytes(2))
    (tmp_path / newest).write_bytes(b"garbage")
    (tmp_path / older).write_bytes(b"")
    with pytest.raises(EdgeError, match="run.0 and run.1 .* both unreadable"):
        start_run(tmp_path)


def _slot_bytes(run: int) -> bytes:
    digits = f"{run:020d}"
    return f"{digits} {zlib.crc32(digits.encode()):08x}\n".encode()


def test_an_upgraded_device_continues_from_the_old_run_file_and_a_garbled_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(events, "_run", events._run)
    (tmp_path / RUN_FILENAME).write_text("41\n")
    assert [start_run(tmp_path) for _ in range(2)] == [42, 43]
    other = tmp_path / "other"
    other.mkdir()
    (other / RUN_FILENAME).write_text("x7")
    with pytest.raises(EdgeError, match=f"run counter {other / RUN_FILENAME} holds 'x7', not a number"):
        start_run(other)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_no_space_for_the_first_slots_names_the_full_disk(tmp_path, monkeypatch):
    from tests.test_storage_faults import fill, small_disk

    monkeypatch.setattr(events, "_run", events._run)
    with small_disk(tmp_path / "disk") as disk:
        fill(disk / "filler")
        with pytest.raises(EdgeError) as caught:
            start_run(disk)
        assert not [p.name for p in disk.iterdir() if p.name != "filler"]  # no temporary left behind
    message = str(caught.value)
    assert f"the disk holding {disk} is full" in message and "writable" not in message, message
