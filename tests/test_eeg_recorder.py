"""Recorder over real LSL: samples, markers and a stream drop round-trip through the loader."""

import json
import threading
import time
import uuid

import numpy as np
import pylsl
import pytest

from edge.eeg.recorder import load_recording, main as recorder_main, record
from edge.eeg.simulator import LABELS, MuseSignal, SimulatorConfig, run_simulator
from edge.errors import EdgeError
from edge.sources.lsl import LSLSource, LSLSourceConfig

FS = 256.0


def _sim(sid: str, seconds: float, seed: int, stop: threading.Event) -> threading.Thread:
    cfg = SimulatorConfig(source_id=sid, duration_s=seconds, seed=seed, wait_for_consumer_s=5.0, linger_s=0.3)
    thread = threading.Thread(target=run_simulator, args=(cfg, stop), daemon=True)
    thread.start()
    return thread


def _expected(seed: int, n: int) -> np.ndarray:
    signal = MuseSignal(SimulatorConfig(seed=seed))
    return np.concatenate([signal.next(12) for _ in range(-(-n // 12))])[:n]


def test_recording_survives_a_stream_drop_and_round_trips(tmp_path):
    sid, marker_name = f"test-{uuid.uuid4().hex[:10]}", f"markers-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo(marker_name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, marker_name)
    markers = pylsl.StreamOutlet(info)
    stop, sim_stop = threading.Event(), threading.Event()
    out = tmp_path / "session1"
    result = {}
    recorder = threading.Thread(target=lambda: result.setdefault("path", record(
        out, LSLSourceConfig(source_id=sid, resolve_timeout_s=0.5, backoff_initial_s=0.1, backoff_max_s=0.3),
        stop=stop, markers_name=marker_name, flush_every_s=0.3)), daemon=True)
    recorder.start()
    first = _sim(sid, 1.5, seed=21, stop=sim_stop)
    time.sleep(1.0)
    markers.push_sample(["stim_on"])
    first.join(10)
    time.sleep(0.6)  # the stream is gone for a while; the recorder keeps running
    during_drop = json.loads((tmp_path / "session1.json").read_text())
    assert during_drop["complete"] is False and (tmp_path / "session1.csv.part").exists()
    second = _sim(sid, 1.5, seed=22, stop=sim_stop)
    time.sleep(1.0)
    markers.push_sample(["stim_off"])
    second.join(10)
    time.sleep(0.3)
    stop.set()
    recorder.join(10)
    assert result["path"] == tmp_path / "session1.csv"
    assert not (tmp_path / "session1.csv.part").exists()

    rec = load_recording(tmp_path / "session1")
    assert rec.channels == LABELS and rec.rate == FS and rec.meta["complete"] is True
    assert rec.meta["connects"] == 2 and rec.meta["stream"]["manufacturer"].startswith("Muse-like")
    assert 2 * 1.5 * FS * 0.9 <= len(rec.timestamps) <= 2 * 1.5 * FS
    assert np.all(np.diff(rec.timestamps) > 0)
    # the drop is in the metadata, where the timestamps jump
    drops = [g for g in rec.gaps if g["reconnect"]]
    assert len(drops) == 1 and drops[0]["seconds"] > 0.5
    jump = int(np.argmax(np.diff(rec.timestamps)))
    assert rec.timestamps[jump] == pytest.approx(drops[0]["start"]) and rec.timestamps[jump + 1] == pytest.approx(drops[0]["end"])
    # samples are the simulator's own, in order, to the CSV precision (float32 sent, 4 decimals kept)
    np.testing.assert_allclose(rec.data[:jump + 1], _expected(21, jump + 1), atol=2e-3)
    np.testing.assert_allclose(rec.data[jump + 1:jump + 257], _expected(22, 256), atol=2e-3)
    # markers with their times, inside the recording and on the right side of the drop
    assert [label for _, label in rec.markers] == ["stim_on", "stim_off"]
    on, off = rec.markers[0][0], rec.markers[1][0]
    assert rec.timestamps[0] < on < rec.timestamps[jump] < rec.timestamps[jump + 1] < off < rec.timestamps[-1] + 0.5
    assert abs(rec.unix_times[0] - rec.meta["started_unix"]) < 5.0
    del markers


def test_recording_replays_through_the_simulator(tmp_path):
    t = 1000.0 + np.arange(600) / FS
    data = _expected(5, 600)
    (tmp_path / "r.csv").write_text("lsl_time,unix_time," + ",".join(LABELS) + "\n" + "\n".join(
        ",".join(f"{v:.6f}" for v in [ts, ts + 1.7e9, *row]) for ts, row in zip(t, data)) + "\n")
    (tmp_path / "r.json").write_text(json.dumps({"format": "emotion-edge/eeg-recording/1", "rate": FS,
                                                 "markers": [], "gaps": [], "complete": True}))
    sid = f"test-{uuid.uuid4().hex[:10]}"
    stop = threading.Event()
    cfg = SimulatorConfig(source_id=sid, replay=str(tmp_path / "r.csv"), speed=5, wait_for_consumer_s=5)
    thread = threading.Thread(target=run_simulator, args=(cfg, stop), daemon=True)
    thread.start()
    src = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0, backoff_max_s=0.5))
    src.start()
    chunks, deadline = [], time.monotonic() + 10
    while sum(len(c.timestamps) for c in chunks) < 600 and time.monotonic() < deadline:
        chunk = src.read(timeout=0.2)
        if chunk is not None:
            chunks.append(chunk)
    src.stop()
    stop.set()
    got = np.concatenate([c.data for c in chunks])
    assert got.shape == (600, 5)
    np.testing.assert_allclose(got, data, atol=1e-3)


def test_unfinished_recording_loads_and_bad_inputs_are_clear(tmp_path):
    (tmp_path / "crash.csv.part").write_text("lsl_time,unix_time,TP9,AF7\n1.0,2.0,3.0,4.0\n1.5,2.5,nan,5.0\n")
    (tmp_path / "crash.json").write_text(json.dumps({"format": "emotion-edge/eeg-recording/1", "rate": 256,
                                                     "markers": [{"time": 1.2, "label": "x"}], "gaps": [],
                                                     "complete": False}))
    rec = load_recording(tmp_path / "crash.csv")
    assert rec.data.shape == (2, 2) and np.isnan(rec.data[1, 0]) and rec.markers == [(1.2, "x")]
    with pytest.raises(EdgeError, match="json"):
        load_recording(tmp_path / "missing")
    (tmp_path / "taken.csv").write_text("x")
    with pytest.raises(EdgeError, match="already exists"):
        record(tmp_path / "taken", LSLSourceConfig(source_id="never"), duration_s=0.1)


def test_recorder_cli_reports_a_missing_stream(tmp_path):
    code = recorder_main(["--out", str(tmp_path / "none"), "--duration", "0.5", "--source-id",
                          f"absent-{uuid.uuid4().hex[:8]}", "--markers-type", ""])
    assert code == 2 and not (tmp_path / "none.csv").exists() and not (tmp_path / "none.csv.part").exists()
