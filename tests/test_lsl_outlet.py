"""The LSL outlet sink read back by real pylsl inlets on this machine, fed through a real Bus."""

import json
import math
import time
import uuid
from contextlib import contextmanager

import pylsl
import pytest

from edge.bus import Bus
from edge.config import AppConfig, DeviceConfig
from edge.errors import EdgeError
from edge.events import Event, utc_timestamp
from edge.observation import Observation
from edge.sinks.lsl_outlet import LslOutletConfig, LslOutletSink, event_unix_time, make
from tests.runtime_helpers import wait_for

RATE = 20.0


def _config(**changes) -> LslOutletConfig:
    tag = uuid.uuid4().hex[:8]
    values = dict(enabled=True, events_stream=f"test-events-{tag}", affect_stream=f"test-affect-{tag}",
                  rate_hz=RATE, delay_s=0.5, hold_s=0.6)
    values.update(changes)
    return LslOutletConfig(**values)


def _inlet(source_id: str) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, 1, 10.0)
    assert found, f"no LSL stream with source_id {source_id}"
    inlet = pylsl.StreamInlet(found[0], processing_flags=pylsl.proc_clocksync)
    inlet.open_stream(10.0)
    return inlet


@contextmanager
def running(config: LslOutletConfig):
    device = f"test-{uuid.uuid4().hex[:10]}"
    sink = LslOutletSink(config, device)
    bus = Bus()
    bus.subscribe(sink.name, sink.handle, sink.accepts, sink.queue_size)
    sink.start()
    bus.start()
    inlets = {}
    try:
        inlets.update({kind: _inlet(f"{device}-{kind}") for kind in ("events", "affect")})
        assert wait_for(lambda: all(sink.health()["consumers"].values()), 10.0)
        yield sink, bus, inlets
    finally:
        for inlet in inlets.values():
            inlet.close_stream()
        bus.stop()
        sink.stop()


def _lsl(unix_time: float) -> float:
    return unix_time - (time.time() - pylsl.local_clock())


def _event(captured: float, label: str) -> Event:
    return Event(device_id="lab", modality="face", kind="emotion", track_id="face-1", label=label, confidence=0.8,
                 probabilities={label: 0.8}, valence=0.5, arousal=0.2, timestamp=utc_timestamp(captured),
                 model={"id": "m", "sha256": "0", "estimator": "classifier"}, latency_ms=12.0)


def test_events_arrive_as_json_markers_in_order_stamped_at_capture_time():
    with running(_config()) as (sink, bus, inlets):
        now = time.time()
        events = [_event(now - 1.5, "happy"), _event(now - 1.0, "sad"), _event(now - 0.5, "neutral")]
        for event in events:
            bus.publish(event)
        received = [inlets["events"].pull_sample(timeout=5.0) for _ in events]
    parsed = [json.loads(sample[0]) for sample, _ in received]
    assert [p["id"] for p in parsed] == [e.id for e in events]
    assert [p["label"] for p in parsed] == ["happy", "sad", "neutral"]
    for (_, stamp), event in zip(received, events):
        # the event's ISO time has milliseconds; the push happened up to 1.5 s after the capture
        assert abs(stamp - _lsl(event_unix_time(event))) < 0.003
    assert sink.health()["markers"] == 3


def _pull_until(inlet, stamp: float, timeout: float = 10.0) -> list[tuple[list[float], float]]:
    samples, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and (not samples or samples[-1][1] < stamp):
        sample, ts = inlet.pull_sample(timeout=0.5)
        if sample is not None:
            samples.append((sample, ts))
    return samples


def test_numeric_stream_carries_the_latest_values_nan_for_no_data_at_capture_time():
    config = _config()
    channels = config.channels()
    column = {name: i for i, name in enumerate(channels)}
    with running(config) as (sink, bus, inlets):
        captured = time.time() - 0.2
        at = _lsl(captured)
        bus.publish(Observation("face", "face-1", captured, valence=0.25, arousal=-0.5, confidence=0.9))
        bus.publish(Observation("face", "face-2", captured, valence=0.75, arousal=0.5, confidence=0.9))
        bus.publish(Observation("voice", "room", captured))  # no data
        contributions = {"face": {"subject": "face-1"}, "voice": {"subject": "room"}, "eeg": {"subject": None}}
        bus.publish(Observation("fused", "wearer", captured, valence=0.3, arousal=-0.1, confidence=0.7,
                                extra={"contributions": contributions}))
        bus.publish(Observation("eeg", "wearer", captured - 2.0, valence=0.9, arousal=0.9))  # arrives too late
        samples = _pull_until(inlets["affect"], at + 1.2)
        late = sink.health()["late"]
    stamps = [ts for _, ts in samples]
    assert all(abs(b - a - 1 / RATE) < 1e-3 for a, b in zip(stamps, stamps[1:]))  # regular, nothing lost
    before = [s for s, ts in samples if ts < at]
    during = [(s, ts) for s, ts in samples if at <= ts <= at + 0.6]
    after = [s for s, ts in samples if ts > at + 0.6]
    assert before and during and after
    assert all(math.isnan(s[column["face_valence"]]) for s in before)
    # the first sample at or after the capture carries the value: within one period of the capture time
    assert 0 <= during[0][1] - at < 1 / RATE + 0.002
    for sample, _ in during:
        # fusion bound face-1, so face channels follow it although face-2 spoke last
        assert sample[column["face_valence"]] == pytest.approx(0.25)
        assert sample[column["face_arousal"]] == pytest.approx(-0.5)
        assert sample[column["fused_valence"]] == pytest.approx(0.3, abs=1e-6)
        assert sample[column["fused_arousal"]] == pytest.approx(-0.1, abs=1e-6)
        assert math.isnan(sample[column["voice_valence"]]) and math.isnan(sample[column["voice_arousal"]])
    # the eeg estimate came 2 s after its capture, later than delay_s: counted, and past hold_s it shows no value
    assert late == 1 and all(math.isnan(s[column["eeg_valence"]]) for s, _ in during)
    assert all(math.isnan(s[column["face_valence"]]) and math.isnan(s[column["fused_valence"]]) for s in after)


def test_stream_metadata_names_channels_and_units():
    config = _config(modalities=("face", "fused"))
    with running(config) as (sink, bus, inlets):
        info = inlets["affect"].info(5.0)
        channel = info.desc().child("channels").child("channel")
        labels, units = [], []
        while not channel.empty():
            labels.append(channel.child_value("label"))
            units.append(channel.child_value("unit"))
            channel = channel.next_sibling()
        assert labels == ["face_valence", "face_arousal", "fused_valence", "fused_arousal"]
        assert set(units) == {"normalized"} and info.nominal_srate() == RATE
        assert inlets["events"].info(5.0).type() == "Markers"


def test_off_by_default_and_make_follows_enabled():
    config = AppConfig({"device": DeviceConfig(id="lab-1"), "lsl_outlet": LslOutletConfig()})
    assert LslOutletConfig().enabled is False and make(config) is None
    config.sections["lsl_outlet"] = LslOutletConfig(enabled=True)
    sink = make(config)
    assert sink.device_id == "lab-1" and sink.state == "stopped"


@pytest.mark.parametrize("key, value", [("rate_hz", 0.0), ("modalities", ()), ("affect_stream", "emotion-edge-events"),
                                        ("delay_s", -1.0), ("queue_size", 0)])
def test_bad_config_is_one_line_naming_the_key(key, value):
    with pytest.raises(EdgeError, match=rf"^lsl_outlet\.{key} = .*expected") as error:
        LslOutletConfig(**{key: value}).validate()
    assert "\n" not in str(error.value)
