"""Per-wearer EEG calibration end to end: a simulated session whose conditions really differ -> `emotion-edge
calibrate --from-recording` -> calibration.json -> the EEG analyzer classifies another session's held-out blocks
far above chance; a control session with the same markers but no difference stays at chance and is not installed.
Also the analyzer without a calibration (the index: low confidence, uncalibrated, None while warming up), and a
guided session over real LSL (the recorder, the announced blocks and their markers)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pylsl
import pytest

from edge.eeg.analyzer import INDEX_CONFIDENCE, EEGAnalyzer
from edge.eeg.calibration import (
    CONFUSION_SVG,
    Block,
    SoftmaxRegression,
    block_order,
    calibrate_recording,
    default_path,
    guided_recording,
    marker_blocks,
    save_calibration,
)
from edge.eeg.config import EEGConfig
from edge.eeg.recorder import load_recording
from edge.eeg.simulator import SimulatorConfig, condition_segments, run_simulator, simulate_session
from edge.errors import EdgeError
from edge.sources.lsl import LSLSource, LSLSourceConfig

from tests.mqtt_broker import Subscriber, broker_fixture  # noqa: F401

from .conftest import ROOT
from .runtime_helpers import toml_text

CLASSES = ["neutral", "positive", "negative"]
BLOCK_S, REST_S, SETTLE_S = 20.0, 5.0, 2.0
BLINKS = 6.0  # per minute: some windows are rejected, as on a wearer


@dataclass
class Chunk:  # what LSLSource.read returns
    timestamps: np.ndarray
    data: np.ndarray
    received: float = 0.0
    gaps: list = field(default_factory=list)
    new_stream: bool = False


def _session(folder, name, seed, effect, rounds=3):
    order = block_order(CLASSES, rounds)
    order = order[seed % 3:] + order[:seed % 3]  # a different order per session
    return simulate_session(folder / name, condition_segments(order, BLOCK_S, REST_S, effect),
                            SimulatorConfig(seed=seed, blinks_per_min=BLINKS, chunk=128))  # 0.5 s blocks: faster


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration_sessions")
    return {"train": _session(folder, "train", 1, 1.0), "held_out": _session(folder, "held_out", 2, 1.0),
            "control": _session(folder, "control", 4, 0.0), "control_held_out": _session(folder, "control2", 5, 0.0)}


def _calibrate(tmp_path, recording, *extra):
    data = tmp_path / "data"
    config = tmp_path / "edge.toml"
    config.write_text(toml_text({"device": {"id": "caltest", "data_dir": str(data)}}))
    result = subprocess.run([sys.executable, "-m", "edge.cli", "calibrate", "--config", str(config),
                             "--from-recording", str(recording), "--settle", str(SETTLE_S), *extra],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    return result, data


def _observe(analyzer, recording, chunk=12):
    """Observations of a recording fed to the analyzer in Muse-sized chunks, as live."""
    observations = []
    for start in range(0, len(recording.timestamps), chunk):
        observations += analyzer.process(Chunk(recording.timestamps[start:start + chunk],
                                               recording.data[start:start + chunk], new_stream=start == 0))
    return observations


def _held_out_accuracy(observations, recording, offset, window_s):
    """Share of windows wholly inside a block (after settling) whose label is the block's class."""
    blocks = marker_blocks(recording.markers, float(recording.timestamps[-1]))
    hits, total = 0, 0
    for o in observations:
        end = o.timestamp - offset
        block = next((b for b in blocks if b.start + SETTLE_S <= end - window_s and end < b.end), None)
        if block is None or o.label is None:
            continue
        total += 1
        hits += o.label == block.label
    return hits / total, total


def _analyzer(recording, data_dir, **eeg):
    offset = float(recording.unix_times[0] - recording.timestamps[0])
    analyzer = EEGAnalyzer(EEGConfig(**eeg), data_dir, labels=recording.channels, rate=recording.rate,
                           to_unix=lambda t: t + offset)
    return analyzer, offset


def test_calibration_learns_a_real_class_difference_and_the_analyzer_uses_it(sessions, tmp_path):
    result, data = _calibrate(tmp_path, sessions["train"])
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    assert "held-out accuracy" in result.stdout and "installed" in result.stdout
    document = json.loads(default_path(data).read_text())
    evaluation = document["evaluation"]
    print(f"\ncross-validated: {evaluation['accuracy']:.3f} (chance {evaluation['chance']:.3f}, "
          f"{evaluation['windows']} windows)")
    assert 0.3 <= evaluation["chance"] <= 0.4 and evaluation["folds"] == 3
    assert evaluation["accuracy"] >= 0.8
    assert document["labels"] == CLASSES and document["channels"] == ["TP9", "AF7", "AF8", "TP10"]
    assert document["rate"] == 256.0 and document["window_s"] == 1.0 and document["training"]["rejected_windows"] > 0
    assert (default_path(data).parent / CONFUSION_SVG).read_text().startswith("<?xml")

    recording = load_recording(sessions["held_out"])
    analyzer, offset = _analyzer(recording, data)
    assert analyzer.estimator == "calibrated" and "eeg.calibration" in analyzer.models()
    observations = _observe(analyzer, recording)
    accuracy, windows = _held_out_accuracy(observations, recording, offset, analyzer.window_s)
    print(f"held-out session through the analyzer: {accuracy:.3f} over {windows} windows")
    assert windows > 250 and accuracy >= 0.8
    clean = [o for o in observations if "rejected" not in o.extra]
    assert all(o.estimator == "calibrated" and o.subject == "wearer" and o.modality == "eeg" for o in observations)
    assert all(0 < o.confidence <= max(o.probabilities.values()) for o in clean)
    assert all(o.quality is not None and 0 <= o.quality <= 1 for o in observations)
    assert set(clean[0].extra["electrodes"]) == {"TP9", "AF7", "AF8", "TP10"}
    # the labels' circumplex coordinates: positive windows read pleasant, negative ones unpleasant
    by_label = {label: np.mean([o.valence for o in clean if o.label == label]) for label in ("positive", "negative")}
    assert by_label["positive"] > 0.3 and by_label["negative"] < -0.3
    rejected = [o for o in observations if "rejected" in o.extra]
    assert rejected and all(o.valence is None and o.arousal is None and o.confidence is None and o.label is None
                            for o in rejected)
    assert all(o.extra["rejected"].split(":")[0] in ("blink", "jaw_clench", "noisy") for o in rejected)
    health = analyzer.health()
    assert health["estimator"] == "calibrated" and health["rejected"] == len(rejected)
    assert health["warming_up"] is None and health["calibration"]["accuracy"] >= 0.8
    assert [o.kind for o in analyzer.close()] == ["end"] and analyzer.close() == []

    # eeg.calibration = "off" ignores the installed file; filters other than the calibration's are refused
    assert _analyzer(recording, data, calibration="off")[0].estimator == "index"
    with pytest.raises(EdgeError, match="eeg.notch_hz"):
        _analyzer(recording, data, notch_hz=60.0)


def test_without_a_class_difference_calibration_stays_at_chance_and_is_not_installed(sessions, tmp_path):
    result, data = _calibrate(tmp_path, sessions["control"])
    assert result.returncode == 2 and "does not beat chance" in result.stderr, result.stderr[-3000:]
    assert not default_path(data).exists()
    result, data = _calibrate(tmp_path, sessions["control"], "--force")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads(default_path(data).read_text())["evaluation"]
    print(f"\ncontrol cross-validated: {evaluation['accuracy']:.3f} (chance {evaluation['chance']:.3f})")
    assert evaluation["accuracy"] <= 0.5
    recording = load_recording(sessions["control_held_out"])
    analyzer, offset = _analyzer(recording, data)
    accuracy, windows = _held_out_accuracy(_observe(analyzer, recording), recording, offset, analyzer.window_s)
    print(f"control model on another control session: {accuracy:.3f} over {windows} windows")
    assert accuracy <= 0.5
    # a model near chance is not trusted: its skill scales confidence down
    assert analyzer.calibration.skill < 0.25


def test_uncalibrated_analyzer_reports_the_index_with_low_confidence_and_none_while_warming_up(sessions, tmp_path):
    recording = load_recording(sessions["held_out"])
    analyzer, _ = _analyzer(recording, tmp_path / "no-calibration", warmup_s=10.0)
    assert analyzer.estimator == "index" and analyzer.models() == {}
    assert analyzer.health()["warming_up"] is True and analyzer.health()["calibration"] is None
    observations = _observe(analyzer, recording)
    assert all(o.extra["uncalibrated"] and o.estimator == "index" and o.label is None for o in observations)
    warming = [o for o in observations if "warming_up" in o.extra]
    ready = [o for o in observations if "warming_up" not in o.extra and "rejected" not in o.extra]
    assert len(warming) >= 20 and ready
    assert all(o.valence is None and o.arousal is None and o.confidence is None for o in warming)
    progress = [o.extra["warming_up"] for o in warming]
    assert progress == sorted(progress) and 0 < progress[0] < progress[-1] <= 1
    assert observations.index(ready[0]) > observations.index(warming[-1])
    assert all(o.confidence == INDEX_CONFIDENCE <= 0.3 and -1 <= o.valence <= 1 for o in ready)
    assert len({round(o.valence, 6) for o in ready}) > len(ready) // 2  # raw per window: not held or averaged
    assert analyzer.health()["warming_up"] is False and analyzer.health()["warmup_progress"] is None


def test_explicit_calibration_path_must_exist(tmp_path):
    with pytest.raises(EdgeError, match="eeg.calibration"):
        EEGAnalyzer(EEGConfig(calibration=str(tmp_path / "missing.json")), tmp_path)


def test_guided_session_over_lsl_records_the_announced_blocks_with_their_markers(tmp_path):
    sid = f"test-{uuid.uuid4().hex[:10]}"
    stop = threading.Event()
    sim = threading.Thread(target=run_simulator, daemon=True, kwargs={
        "config": SimulatorConfig(source_id=sid, name=sid, blinks_per_min=0), "stop": stop})
    sim.start()

    @dataclass
    class App:
        lsl: LSLSourceConfig

    announced = []
    order = block_order(["neutral", "positive"], 2)
    try:
        csv = guided_recording(tmp_path / "guided", App(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0,
                                                                        backoff_max_s=0.5)),
                               order, block_s=1.5, rest_s=0.3, announce=announced.append)
    finally:
        stop.set()
        sim.join(10)
    recording = load_recording(csv)
    blocks = marker_blocks(recording.markers, float(recording.timestamps[-1]))
    assert [b.label for b in blocks] == order == ["neutral", "positive", "positive", "neutral"]
    assert all(abs((b.end - b.start) - 1.5) < 0.2 for b in blocks)
    assert recording.timestamps[0] < blocks[0].start and blocks[-1].end <= recording.timestamps[-1] + 0.1
    assert sum("think of something pleasant" in line for line in announced) == 2
    assert sum(line.startswith("rest") for line in announced) == 3


def test_analyzer_over_lsl_classifies_a_simulated_wearer_whose_markers_arrive_on_their_own_stream(sessions, tmp_path):
    data = tmp_path / "data"
    save_calibration(default_path(data), calibrate_recording(load_recording(sessions["train"]), EEGConfig()))
    sid = f"test-{uuid.uuid4().hex[:10]}"
    order = ["positive", "negative", "neutral"]
    segments = condition_segments(order, 20.0, 0.0)
    sent = -(-round(60.0 * 256) // 12) * 12
    stop = threading.Event()
    # 10x real time; the sender waits for both inlets and stays open until everything was read.
    sim = threading.Thread(target=run_simulator, daemon=True, kwargs={"config": SimulatorConfig(
        source_id=sid, name=sid, speed=10.0, markers=True, wait_for_consumer_s=15.0, blinks_per_min=0, seed=8,
        linger_s=60.0), "stop": stop, "segments": segments})
    sim.start()
    source = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0, backoff_max_s=0.5, buffer_s=120,
                                       queue_chunks=10_000))
    source.start()
    streams = pylsl.resolve_byprop("name", f"{sid}-markers", 1, 10.0)
    assert streams, "the simulator's marker stream was not found"
    markers_inlet = pylsl.StreamInlet(streams[0], processing_flags=pylsl.proc_clocksync)
    markers_inlet.open_stream(5.0)

    class App:
        eeg = EEGConfig()

        class device:
            data_path, cache_path = data, tmp_path / "cache"

    analyzer = EEGAnalyzer.from_config(App, source)
    observations, markers = [], []
    try:
        deadline = time.monotonic() + 60
        while source.stats()["samples"] < sent and time.monotonic() < deadline:
            chunk = source.read(timeout=0.3)
            if chunk is not None:
                observations += analyzer.process(chunk)
            samples, stamps = markers_inlet.pull_chunk(timeout=0.0)
            markers += [(float(t), s[0]) for s, t in zip(samples, stamps)]
        while (chunk := source.read(timeout=0.5)) is not None:
            observations += analyzer.process(chunk)
        time.sleep(0.3)
        samples, stamps = markers_inlet.pull_chunk(timeout=1.0)
        markers += [(float(t), s[0]) for s, t in zip(samples, stamps)]
    finally:
        stop.set()
        source.stop()
        sim.join(10)
    assert [m for _, m in markers] == [f"label:{c}" for c in order] + ["end"]
    assert np.allclose(np.diff([t for t, _ in markers]), 20.0, atol=0.05)  # stamped in signal time
    assert analyzer.estimator == "calibrated" and len(observations) >= 110
    assert all(o.timestamp > 1e9 for o in observations)  # LSL times converted to Unix seconds at the source
    blocks = [Block(float(source.to_unix(t)), float(source.to_unix(markers[k + 1][0])), m[len("label:"):], 0)
              for k, (t, m) in enumerate(markers[:-1])]
    scored = [(o.label, b.label) for o in observations for b in blocks
              if b.start + SETTLE_S <= o.timestamp - analyzer.window_s and o.timestamp < b.end]
    accuracy = np.mean([a == b for a, b in scored])
    print(f"\nover LSL: {accuracy:.3f} of {len(scored)} windows inside blocks")
    assert len(scored) >= 90 and accuracy >= 0.75  # chance is 1/3


def test_softmax_regression_reaches_the_penalised_optimum_deterministically():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 6)) * [1, 2, 3, 1, 1, 5] + [0, 1, 0, 0, 2, 0]
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.3).astype(int) + (x[:, 2] > 2).astype(int)
    model = SoftmaxRegression(l2=0.05).fit(x, y, 3)
    again = SoftmaxRegression(l2=0.05).fit(x, y, 3)
    np.testing.assert_array_equal(model.weights, again.weights)
    # stationarity: the gradient of the mean log loss plus the L2 term vanishes at the fitted weights
    z = (x - model.mean) / model.std
    p = model.predict_proba(x)
    residual = p - np.eye(3)[y]
    np.testing.assert_allclose(residual.T @ z / len(x) + 0.05 * model.weights, 0, atol=1e-7)
    np.testing.assert_allclose(residual.sum(axis=0) / len(x) + 1e-6 * model.bias, 0, atol=1e-7)
    assert (p.argmax(axis=1) == y).mean() > 0.7


def test_schedule_rotates_and_markers_become_blocks():
    assert block_order(["a", "b", "c"], 2) == ["a", "b", "c", "b", "c", "a"]
    with pytest.raises(EdgeError, match="at least twice"):
        block_order(["a", "b"], 1)
    blocks = marker_blocks([(1.0, "label:Positive"), (5.0, "end"), (6.0, "stimulus 3"), (7.0, "label:neutral"),
                            (9.0, "label:positive")], end_time=12.0)
    assert [(b.start, b.end, b.label, b.occurrence) for b in blocks] == [
        (1.0, 5.0, "positive", 0), (7.0, 9.0, "neutral", 0), (9.0, 12.0, "positive", 1)]


def test_the_runtime_uses_the_wearers_calibration(sessions, tmp_path, broker):
    """`calibrate` on a simulated recording, then `run` on the same data dir: EEG is estimated by the wearer's
    own model (estimator "calibrated", labels from its classes), not by the uncalibrated index."""
    import json
    import signal

    from .runtime_helpers import finish, output, start_runtime
    from .test_runtime_eeg import eeg_config, simulated_muse

    result, data = _calibrate(tmp_path, sessions["train"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert default_path(data).is_file()
    with simulated_muse() as source_id:
        config = eeg_config(tmp_path, broker.port, source_id)
        config["device"]["data_dir"] = str(data)
        subscriber = Subscriber(broker.port, ["emotion_edge/eegdev/eeg/#"])
        process = start_runtime(tmp_path, config)
        try:
            def labelled(messages) -> bool:
                return any(m.topic.endswith("eeg/state") and m.payload and json.loads(m.payload)["label"]
                           for m in messages)

            assert subscriber.wait_for(labelled, timeout=90), output(process)[1][-3000:]
        finally:
            process.send_signal(signal.SIGTERM)
            finish(process, 30)
    states = [json.loads(m.payload) for m in subscriber.on("emotion_edge/eegdev/eeg/state") if m.payload]
    estimated = [s for s in states if s["valence"] is not None]
    assert estimated and all(s["estimator"] == "calibrated" and s.get("uncalibrated") is None for s in estimated)
    assert {s["label"] for s in estimated if s["label"]} <= set(CLASSES)
    events = [json.loads(m.payload) for m in subscriber.on("emotion_edge/eegdev/eeg/event")]
    assert events and all(e["model"]["estimator"] == "calibrated" for e in events)
    subscriber.close()
