"""The EEG chain under the analyzer, end to end over real LSL: index signs, None for no data, artefact rejection,
bad input, the classifier hook, and offline reuse of the very same chain."""

import json
import threading
import time
import uuid

import jsonschema
import numpy as np
import pylsl
import pytest

from edge.affect import valence_arousal
from edge.bus import Bus
from edge.eeg import MUSE_CHANNELS
from edge.eeg.analyzer import INDEX_CONFIDENCE, SUBJECT, EEGAnalyzer
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
from edge.manifest import sha256_file
from edge.policy import EventPolicy
from edge.smoothing import ObservationSmoother, SmoothingConfig
from edge.sources.lsl import LSLSource, LSLSourceConfig
from edge.worker import Worker

FS = 256.0
SPEED = 25.0  # simulated seconds per real second; timestamps stay in signal time
# The simulators stay open after their data until stopped: liblsl drops samples still waiting in an inlet when
# the sender closes, so the tests close them once everything sent has been read.
LINGER_S = 60.0
CLASSES = ["negative", "neutral", "positive"]
UNIX_OFFSET = 1.7e9  # offline chunks carry signal seconds; the analyzer reports Unix times


class Chunk:  # what LSLSource.read returns
    def __init__(self, timestamps, data, new_stream=False, gaps=()):
        self.timestamps, self.data, self.new_stream, self.gaps = timestamps, data, new_stream, list(gaps)


def _samples_sent(seconds: float, chunk: int = 12) -> int:
    """What the simulator sends for `seconds` of signal: whole chunks until the duration is covered."""
    return -(-round(seconds * FS) // chunk) * chunk


def _all_read(source: LSLSource, sent: int) -> bool:
    """Every sent sample reached the source and every chunk it queued was read (or dropped)."""
    stats = source.stats()
    return stats["samples"] >= sent and stats["read"] + stats["dropped"] >= stats["chunks"]


def _run(segments, config=None, sim=None):
    """Simulate over LSL and feed everything that arrives to an EEGAnalyzer; returns its observations and it."""
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
    analyzer = EEGAnalyzer(config or EEGConfig(), source=source)
    observations = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            chunk = source.read(timeout=0.3)
            if chunk is None:
                if _all_read(source, sent) or not thread.is_alive():
                    break
                continue
            observations += analyzer.process(chunk)
    finally:
        stop.set()
        source.stop()
        thread.join(5)
    assert source.stats()["dropped"] == 0, source.stats()
    return observations, analyzer


def _ready(observations):
    return [o for o in observations if "warming_up" not in o.extra and "rejected" not in o.extra]


def _as_event(observation):
    """The event the runtime's policy would publish for this observation, as JSON."""
    return json.loads(json.dumps(EventPolicy("eeg", "test-device").event(observation).to_dict()))


@pytest.mark.parametrize("asymmetry", [0.8, -0.8])
def test_valence_follows_frontal_alpha_asymmetry_after_a_neutral_baseline(asymmetry):
    # 45 s neutral (30 s of it fill the baseline), then 20 s with the asymmetry.
    observations, analyzer = _run([Segment(45, 0.0, 3.0), Segment(20, asymmetry, 3.0)])
    assert len(observations) >= 115
    warm = [o for o in observations if "warming_up" in o.extra]
    assert 55 <= len(warm) <= 65  # 30 s of clean 0.5 s steps
    assert all(o.valence is None and o.arousal is None and o.confidence is None for o in warm)
    ready = _ready(observations)
    assert ready and all(o.valence is not None and o.confidence == INDEX_CONFIDENCE for o in ready)
    assert observations.index(ready[0]) > observations.index(warm[-1])
    neutral = [o.valence for o in ready][:20]
    assert abs(np.mean(neutral)) < 0.4
    tail = [o.valence for o in ready[-16:]]  # windows fully inside the asymmetric segment
    assert np.sign(np.mean(tail)) == np.sign(asymmetry) and abs(np.mean(tail)) > 0.4, tail
    measured = np.mean([o.extra["asymmetry"] for o in ready[-16:]])
    assert measured == pytest.approx(asymmetry, abs=0.3)
    for o in observations:
        assert o.modality == "eeg" and o.subject == SUBJECT and o.kind == "state"
        assert o.label is None and o.probabilities is None and o.estimator == "index" and o.extra["uncalibrated"]
    for o in observations[::10]:
        jsonschema.validate(_as_event(o), EVENT_JSON_SCHEMA)
    assert analyzer.health()["warming_up"] is False


def test_arousal_rises_with_beta_activity():
    observations, _ = _run([Segment(45, 0.0, 3.0), Segment(20, 0.0, 9.0)])
    tail = [o.arousal for o in _ready(observations)[-16:]]
    assert np.mean(tail) > 0.4, tail


def test_blinks_and_jaw_clenches_reject_windows_and_clean_data_does_not():
    config = EEGConfig(warmup_s=2.0)  # a short baseline, so accepted windows carry values within 12 s
    clean, _ = _run([Segment(12, 0.0, 3.0)], config)
    assert clean and not any("rejected" in o.extra for o in clean)
    blinks, analyzer = _run([Segment(12, 0.0, 3.0)], config, sim={"blinks_per_min": 30})
    assert any(o.extra.get("rejected", "").startswith("blink:") for o in blinks)
    assert analyzer.health()["rejected"] > 0
    rejected = [o for o in blinks if "rejected" in o.extra]
    assert all(o.valence is None and o.arousal is None and o.confidence is None for o in rejected)
    assert all(o.extra["rejected"] == o.extra["reasons"][0] for o in rejected)
    assert any(o.valence is not None for o in _ready(blinks))  # only the rejected windows say "no data"
    jaw, _ = _run([Segment(12, 0.0, 3.0)], config, sim={"jaw_per_min": 30})
    assert any(any(r.startswith("jaw_clench:") for r in o.extra.get("reasons", [])) for o in jaw)


def test_flat_channels_are_reported_and_a_flat_frontal_channel_rejects():
    observations, analyzer = _run([Segment(8, 0.0, 3.0)], sim={"flat_channels": ("AF8", "TP10")})
    assert observations and all(o.extra.get("rejected") == "flat:AF8" and o.valence is None for o in observations)
    assert all(o.extra["electrode_status"]["TP10"] == "flat" for o in observations)
    assert all(o.extra["electrodes"]["TP10"] < o.extra["electrodes"]["AF7"] for o in observations)
    assert analyzer.health()["electrodes"]["AF7"]["status"] == "ok"


def test_nan_and_infinity_over_lsl_reject_windows_then_processing_recovers():
    sid = f"test-{uuid.uuid4().hex[:10]}"
    outlet = make_outlet("Muse-NaN", sid, FS, LABELS, 12)
    source = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0, backoff_max_s=0.5))
    source.start()
    analyzer = EEGAnalyzer(EEGConfig(warmup_s=2.0), source=source)
    try:
        assert source.wait_connected(5.0)
        signal = MuseSignal(SimulatorConfig(blinks_per_min=0, seed=2)).next(4104)  # 342 chunks of 12
        signal[int(FS * 5):int(FS * 5) + 3, 1] = np.nan  # AF7
        signal[int(FS * 5.5), 0] = np.inf  # TP9
        signal[int(FS * 5.6), 2] = -np.inf  # AF8
        t0 = pylsl.local_clock()
        for end in range(12, len(signal) + 1, 12):
            outlet.push_chunk(signal[end - 12:end].astype(np.float32), t0 + (end - 1) / FS)
        observations, deadline = [], time.monotonic() + 30
        while len(observations) < 25 and time.monotonic() < deadline:
            chunk = source.read(timeout=0.2)
            if chunk is not None:
                observations += analyzer.process(chunk)
        assert len(observations) == 25  # windows end at sample 1024 + k * 128 <= 4104
        hit = [o for o in observations if "rejected" in o.extra]
        assert hit and all(o.extra["rejected"] == "invalid:AF7" for o in hit[:1])
        assert any("invalid:AF8" in o.extra["reasons"] for o in hit)
        assert any(o.extra["electrode_status"]["TP9"] == "invalid" for o in hit)
        assert all(o.valence is None and o.arousal is None for o in hit)
        later = observations[-3:]  # windows that start after the bad samples
        assert not any("rejected" in o.extra for o in later)
        assert all(o.valence is not None and o.arousal is not None for o in later)  # estimates again
        for o in observations:
            assert np.isfinite([o.extra["asymmetry"], o.extra["beta_alpha_log_ratio"], o.quality]).all()
            jsonschema.validate(_as_event(o), EVENT_JSON_SCHEMA)
    finally:
        source.stop()
        del outlet


def test_stream_without_the_configured_channels_is_a_clear_error():
    chain = EEGPipeline(EEGConfig(channels=("TP9", "AF7", "AF8", "TP10")))
    with pytest.raises(EdgeError, match="eeg.channels"):
        chain.set_stream(["Fp1", "Fp2", "O1", "O2"], FS)
    with pytest.raises(EdgeError, match="eeg.channels"):
        EEGAnalyzer(EEGConfig(), labels=["Fp1", "Fp2", "O1", "O2"], rate=FS)
    with pytest.raises(EdgeError, match="set_stream"):
        EEGPipeline().analyse_chunk(Chunk(np.zeros(12), np.zeros((12, 4))))


def test_a_stream_of_the_wrong_shape_stops_the_worker_with_exit_2_instead_of_spinning():
    """The runtime's path: the worker reads the source, the source refuses the stream, the runtime stops."""
    sid = f"test-{uuid.uuid4().hex[:10]}"
    outlet = make_outlet("Three", sid, FS, LABELS[:3], 12)
    source = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0, backoff_max_s=0.5))
    stopping, fatal = threading.Event(), []
    bus = Bus()
    worker = Worker("eeg", source, EEGAnalyzer(EEGConfig(), source=source),
                    ObservationSmoother({"eeg": (SmoothingConfig(), False)}), EventPolicy("eeg", "test-device"),
                    bus, stopping, lambda reason, code: (fatal.append((reason, code)), stopping.set()),
                    lambda modality: None)
    try:
        worker.start()
        worker.join(20)
        assert not worker.is_alive() and worker.items == 0
        assert len(fatal) == 1 and fatal[0][1] == 2 and "3 channels" in fatal[0][0], fatal
    finally:
        stopping.set()
        worker.stop()
        del outlet


def _linear_model(folder, weights):
    """A real ONNX artifact with its manifest: softmax(W (v - mean v)) over the window's 20 DE features."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1], keepdims=1),
         helper.make_node("Sub", ["x", "mean"], ["centred"]),
         helper.make_node("MatMul", ["centred", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "eeg_linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 20])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(weights.T.astype(np.float32), "w")])
    artifact = folder / "eeg_linear.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), artifact)
    config = EEGConfig()
    manifest = {
        "schema": "emotion-edge/manifest/1", "model_id": "eeg-test-linear", "task": "eeg_emotion", "modality": "eeg",
        "format": "onnx", "precision": "fp32", "artifact": {"file": artifact.name, "sha256": sha256_file(artifact)},
        "labels": CLASSES, "inputs": [{"name": "x", "shape": [1, 20], "dtype": "float32"}],
        "outputs": [{"name": "probabilities", "shape": [1, 3], "dtype": "float32"}],
        "preprocessing": {"input": "de", "feature_kind": "de", "channels": list(MUSE_CHANNELS),
                          "window_s": config.window_s, "bandpass_hz": [config.bandpass_low_hz, config.bandpass_high_hz],
                          "standardize": {"mean": [0.0] * 20, "std": [1.0] * 20}},
        "quantization": {}, "source": {"test": "tests/test_eeg_pipeline.py"}}
    (folder / (artifact.name + ".json")).write_text(json.dumps(manifest))
    return artifact


def test_classifier_hook_turns_probabilities_into_label_and_valence(tmp_path):
    weights = np.random.default_rng(0).standard_normal((3, 20))

    def predict(vector):
        logits = weights @ (vector - vector.mean())
        p = np.exp(logits - logits.max())
        return p / p.sum()

    config = EEGConfig(model=str(_linear_model(tmp_path, weights)))
    analyzer = EEGAnalyzer(config, labels=LABELS, rate=FS, to_unix=lambda t: t + UNIX_OFFSET)
    assert analyzer.estimator == "classifier" and analyzer.health()["warming_up"] is None
    reference = EEGPipeline(config)  # the same chain beside it, for each window's features
    reference.set_stream(LABELS, FS)
    signal = MuseSignal(SimulatorConfig(seed=3, blinks_per_min=20)).next(int(FS * 16))
    times = 100.0 + np.arange(len(signal)) / FS
    pairs = []
    for start in range(0, len(signal), 12):
        chunk = Chunk(times[start:start + 12], signal[start:start + 12])
        observations, results = analyzer.process(chunk), reference.analyse_chunk(chunk)
        assert len(observations) == len(results)
        pairs += zip(observations, results)
    assert len(pairs) == 25
    accepted = [(o, r) for o, r in pairs if not r.rejected]
    assert accepted and len(accepted) < len(pairs)  # blinks reject some windows
    for o, r in pairs:
        assert o.estimator == "classifier" and o.model["id"] == "eeg-test-linear" and o.model["sha256"]
        assert o.timestamp == pytest.approx(r.times[-1] + UNIX_OFFSET) and "uncalibrated" not in o.extra
        if r.rejected:  # not classified: no data
            assert o.label is None and o.probabilities is None and o.valence is None and o.confidence is None
            assert o.extra["rejected"] == r.assessment.reason
            continue
        expected = predict(r.features.vector("de"))
        np.testing.assert_allclose([o.probabilities[c] for c in CLASSES], expected, rtol=1e-4, atol=1e-6)
        assert o.label == CLASSES[int(np.argmax(expected))]
        assert o.confidence == pytest.approx(max(o.probabilities.values()))
        valence, arousal = valence_arousal(CLASSES, np.array([o.probabilities[c] for c in CLASSES]))
        assert (o.valence, o.arousal) == pytest.approx((valence, arousal))
        jsonschema.validate(_as_event(o), EVENT_JSON_SCHEMA)
    assert len({o.label for o, _ in accepted}) >= 1 and len({round(o.valence, 6) for o, _ in accepted}) > 1
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
    live = EEGPipeline()
    live.set_stream(LABELS, FS)
    online = []
    for start in range(0, len(signal), 12):  # what LSLSource.read returns, 12 samples at a time
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
