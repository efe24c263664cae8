"""EEGPipeline end to end over real LSL: index signs, bad input, classifier hook, offline reuse."""

import threading
import time
import uuid

import jsonschema
import numpy as np
import pylsl
import pytest

from edge.eeg.config import EEGConfig
from edge.eeg.estimator import ClassifierEstimator
from edge.eeg.pipeline import EEGPipeline, extract_recording_features
from edge.eeg.simulator import (
    LABELS,
    MuseSignal,
    Segment,
    SimulatorConfig,
    make_outlet,
    run_simulator,
)
from edge.errors import EdgeError
from edge.events import EVENT_JSON_SCHEMA
from edge.sources.lsl import LSLSource, LSLSourceConfig

FS = 256.0
SPEED = 25.0  # simulated seconds per real second; timestamps stay in signal time
# The simulators stay open after their data until stopped: liblsl drops samples still waiting in an inlet when
# the sender closes, so the tests close them once everything sent has been read.
LINGER_S = 60.0


def _samples_sent(seconds: float, chunk: int = 12) -> int:
    """What the simulator sends for `seconds` of signal: whole chunks until the duration is covered."""
    return -(-round(seconds * FS) // chunk) * chunk


def _all_read(source: LSLSource, sent: int) -> bool:
    """Every sent sample reached the source and every chunk it queued was read (or dropped)."""
    stats = source.stats()
    return stats["samples"] >= sent and stats["read"] + stats["dropped"] >= stats["chunks"]


def _run(segments, config=None, sim=None, classifier=None):
    """Simulate over LSL, run the pipeline on everything that arrives; returns the events."""
    sid = f"test-{uuid.uuid4().hex[:10]}"
    stop = threading.Event()
    settings = {"source_id": sid, "speed": SPEED, "wait_for_consumer_s": 10.0, "blinks_per_min": 0, "seed": 11,
                "linger_s": LINGER_S}
    settings.update(sim or {})
    sim_cfg = SimulatorConfig(**settings)
    sent = _samples_sent(sum(s.duration_s for s in segments))
    thread = threading.Thread(target=run_simulator, args=(sim_cfg, stop, segments), daemon=True)
    thread.start()
    # At 25x a slow reader is seconds of signal behind: room for all of it, so no chunk is dropped.
    source = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0, backoff_max_s=0.5, buffer_s=360,
                                       queue_chunks=100_000))
    source.start()
    pipeline = EEGPipeline(config, source=source, classifier=classifier, device_id="test-device")
    events = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            chunk = source.read(timeout=0.3)
            if chunk is None:
                if _all_read(source, sent) or not thread.is_alive():
                    break
                continue
            events += pipeline.process_chunk(chunk)
    finally:
        stop.set()
        source.stop()
        thread.join(5)
    assert source.stats()["dropped"] == 0, source.stats()
    return events, pipeline


def _ready(events):
    return [e for e in events if not e.extra["warming_up"] and not e.extra["rejected"]]


@pytest.mark.parametrize("asymmetry", [0.8, -0.8])
def test_valence_follows_frontal_alpha_asymmetry_after_a_neutral_baseline(asymmetry):
    # 45 s neutral (30 s of it fill the baseline), then 20 s with the asymmetry.
    events, pipeline = _run([Segment(45, 0.0, 3.0), Segment(20, asymmetry, 3.0)])
    assert len(events) >= 115
    warm = [e for e in events if e.extra["warming_up"]]
    assert 55 <= len(warm) <= 65 and warm[-1].valence == 0.0  # 30 s of clean 0.5 s steps
    ready = _ready(events)
    neutral = [e.valence for e in ready if e.extra["asymmetry"] is not None][:20]
    assert abs(np.mean(neutral)) < 0.4
    tail = [e.valence for e in ready[-16:]]  # windows fully inside the asymmetric segment
    assert np.sign(np.mean(tail)) == np.sign(asymmetry) and abs(np.mean(tail)) > 0.4, tail
    measured = np.mean([e.extra["asymmetry"] for e in ready[-16:]])
    assert measured == pytest.approx(asymmetry, abs=0.3)
    for event in events[::10]:
        jsonschema.validate(event.to_dict(), EVENT_JSON_SCHEMA)
        assert event.modality == "eeg" and event.label is None and event.model["estimator"] == "index"
    assert pipeline.health()["warming_up"] is False


def test_arousal_rises_with_beta_activity():
    events, _ = _run([Segment(45, 0.0, 3.0), Segment(20, 0.0, 9.0)])
    tail = [e.arousal for e in _ready(events)[-16:]]
    assert np.mean(tail) > 0.4, tail


def test_blinks_and_jaw_clenches_reject_windows_and_clean_data_does_not():
    clean, _ = _run([Segment(12, 0.0, 3.0)])
    assert clean and not any(e.extra["rejected"] for e in clean)
    blinks, pipeline = _run([Segment(12, 0.0, 3.0)], sim={"blinks_per_min": 30})
    assert any((e.extra["reason"] or "").startswith("blink:") for e in blinks)
    assert pipeline.health()["rejected"] > 0
    jaw, _ = _run([Segment(12, 0.0, 3.0)], sim={"jaw_per_min": 30})
    assert any(any(r.startswith("jaw_clench:") for r in e.extra["reasons"]) for e in jaw)


def test_flat_channels_are_reported_and_a_flat_frontal_channel_rejects():
    events, pipeline = _run([Segment(8, 0.0, 3.0)], sim={"flat_channels": ("AF8", "TP10")})
    assert events and all(e.extra["rejected"] and e.extra["reason"] == "flat:AF8" for e in events)
    assert all(e.extra["quality"]["TP10"]["status"] == "flat" for e in events)
    assert pipeline.health()["quality"]["AF7"]["status"] == "ok"


def test_nan_and_infinity_over_lsl_reject_windows_then_processing_recovers():
    sid = f"test-{uuid.uuid4().hex[:10]}"
    outlet = make_outlet("Muse-NaN", sid, FS, LABELS, 12)
    source = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0, backoff_max_s=0.5))
    source.start()
    pipeline = EEGPipeline(source=source)
    try:
        assert source.wait_connected(5.0)
        signal = MuseSignal(SimulatorConfig(blinks_per_min=0, seed=2)).next(4104)  # 342 chunks of 12
        signal[int(FS * 5):int(FS * 5) + 3, 1] = np.nan  # AF7
        signal[int(FS * 5.5), 0] = np.inf  # TP9
        signal[int(FS * 5.6), 2] = -np.inf  # AF8
        t0 = pylsl.local_clock()
        for end in range(12, len(signal) + 1, 12):
            outlet.push_chunk(signal[end - 12:end].astype(np.float32), t0 + (end - 1) / FS)
        events, deadline = [], time.monotonic() + 30
        while sum(1 for _ in events) < 25 and time.monotonic() < deadline:
            chunk = source.read(timeout=0.2)
            if chunk is not None:
                events += pipeline.process_chunk(chunk)
        assert len(events) == 25  # windows end at sample 1024 + k * 128 <= 4104
        hit = [e for e in events if e.extra["rejected"]]
        assert hit and all(e.extra["reason"] == "invalid:AF7" for e in hit[:1])
        assert any("invalid:AF8" in e.extra["reasons"] for e in hit)
        assert any(e.extra["quality"]["TP9"]["status"] == "invalid" for e in hit)
        later = events[-3:]  # windows that start after the bad samples
        assert not any(e.extra["rejected"] for e in later)
        for e in events:
            assert np.isfinite([e.valence, e.arousal, e.extra["asymmetry"]]).all()
            jsonschema.validate(e.to_dict(), EVENT_JSON_SCHEMA)
    finally:
        source.stop()
        del outlet


def test_stream_without_the_configured_channels_is_a_clear_error():
    pipeline = EEGPipeline(EEGConfig(channels=("TP9", "AF7", "AF8", "TP10")))
    with pytest.raises(EdgeError, match="eeg.channels"):
        pipeline.set_stream(["Fp1", "Fp2", "O1", "O2"], FS)


def test_run_raises_the_wrong_stream_error_instead_of_spinning():
    sid = f"test-{uuid.uuid4().hex[:10]}"
    outlet = make_outlet("Three", sid, FS, LABELS[:3], 12)
    source = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0, backoff_max_s=0.5))
    source.start()
    stop = threading.Event()
    try:
        with pytest.raises(EdgeError, match="3 channels"):
            EEGPipeline(source=source).run(lambda e: None, stop, read_timeout=0.1)
    finally:
        stop.set()
        source.stop()
        del outlet


def test_run_publishes_events_and_survives_a_failing_publisher():
    sid = f"test-{uuid.uuid4().hex[:10]}"
    stop, sim_stop = threading.Event(), threading.Event()
    sim = threading.Thread(target=run_simulator, daemon=True, args=(
        SimulatorConfig(source_id=sid, speed=10, duration_s=8, wait_for_consumer_s=10, blinks_per_min=0,
                        linger_s=LINGER_S), sim_stop))
    sim.start()
    source = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0, backoff_max_s=0.5))
    source.start()
    pipeline = EEGPipeline(source=source)
    published = []

    def publish(event):
        published.append(event)
        if len(published) == 2:
            raise ConnectionError("broker gone")

    runner = threading.Thread(target=pipeline.run, args=(publish, stop), daemon=True)
    runner.start()
    sent = _samples_sent(8)
    try:
        deadline = time.monotonic() + 30
        while not _all_read(source, sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _all_read(source, sent), source.stats()
    finally:
        stop.set()  # run() finishes the chunk it read (its events included) before it returns
        runner.join(5)
        sim_stop.set()
        sim.join(5)
        source.stop()
    assert not runner.is_alive()
    assert source.stats()["dropped"] == 0
    assert len(published) == 9  # (8 s - 4 s) / 0.5 s + 1
    assert pipeline.health()["errors"] == 1 and pipeline.health()["events"] == 9


def test_classifier_hook_turns_probabilities_into_label_and_valence():
    weights = np.random.default_rng(0).standard_normal((3, 20))

    def predict(vector):
        logits = weights @ (vector - vector.mean())
        p = np.exp(logits - logits.max())
        return p / p.sum()

    classifier = ClassifierEstimator(predict, ["negative", "neutral", "positive"])
    events, _ = _run([Segment(6, 0.0, 3.0)], classifier=classifier)
    assert events
    for e in events:
        assert e.model["estimator"] == "classifier" and e.label in ("negative", "neutral", "positive")
        assert e.confidence == pytest.approx(max(e.probabilities.values()))
        jsonschema.validate(e.to_dict(), EVENT_JSON_SCHEMA)
    with pytest.raises(EdgeError, match="expected 3"):
        ClassifierEstimator(lambda v: [1.0, 0.0], ["a", "b", "c"]).classify(_features())


def _features():
    from edge.eeg.features import extract_features

    data = MuseSignal(SimulatorConfig(seed=1)).next(1024)[:, :4]
    return extract_features(data, FS, ("TP9", "AF7", "AF8", "TP10"))


def test_offline_extraction_reproduces_the_live_windows_exactly():
    signal = MuseSignal(SimulatorConfig(seed=9, blinks_per_min=6)).next(int(FS * 20))
    times = 100.0 + np.arange(len(signal)) / FS
    offline = extract_recording_features(signal, times, LABELS, FS)
    live = EEGPipeline(clock=lambda: 0.0)
    live.set_stream(LABELS, FS)

    class Chunk:  # what LSLSource.read returns, 12 samples at a time
        def __init__(self, t, d):
            self.timestamps, self.data, self.received, self.gaps, self.new_stream = t, d, 0.0, [], False

    online = []
    for start in range(0, len(signal), 12):
        online += live.analyse_chunk(Chunk(times[start:start + 12], signal[start:start + 12]))
    assert len(offline) == len(online) == 33
    for a, b in zip(offline, online):
        np.testing.assert_allclose(a.features.differential_entropy, b.features.differential_entropy, rtol=1e-9)
        assert a.assessment.reasons == b.assessment.reasons


def test_offline_extraction_restarts_at_gaps():
    signal = MuseSignal(SimulatorConfig(seed=9, blinks_per_min=0)).next(int(FS * 12))
    times = np.arange(len(signal)) / FS
    times[int(FS * 6):] += 2.0  # two seconds missing after 6 s
    results = extract_recording_features(signal, times, LABELS, FS)
    # 6 s before the gap and 6 s after it give 5 windows each; none spans the gap
    assert len(results) == 10
    assert all(np.all(np.diff(r.times) < 0.1) for r in results)
