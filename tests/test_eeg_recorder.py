"""Recorder over real LSL: samples, markers and a stream drop round-trip through the loader."""

import json
import threading
import time
import uuid

import numpy as np
import pylsl
import pytest

from edge.eeg.recorder import load_recording, record
from edge.eeg.recorder import main as recorder_main
from edge.eeg.simulator import LABELS, MuseSignal, SimulatorConfig, run_simulator
from edge.errors import EdgeError
from edge.sources.lsl import LSLSource, LSLSourceConfig
from tests.recorder_helpers import wait_meta

FS = 256.0


def _sim(sid: str, seconds: float, seed: int, stop: threading.Event) -> threading.Thread:
    """The sender stays open after its data until `stop`: liblsl drops samples still waiting in an inlet when the
    sender closes, so the test closes it once it has seen the last sample recorded."""
    cfg = SimulatorConfig(source_id=sid, duration_s=seconds, seed=seed, wait_for_consumer_s=15.0, linger_s=30.0)
    thread = threading.Thread(target=run_simulator, args=(cfg, stop), daemon=True)
    thread.start()
    return thread


def _expected(seed: int, n: int) -> np.ndarray:
    signal = MuseSignal(SimulatorConfig(seed=seed))
    return np.concatenate([signal.next(12) for _ in range(-(-n // 12))])[:n]


def _offset_in(expected: np.ndarray, data: np.ndarray) -> int:
    """Where the recorded samples start in the simulator's sequence (an inlet only sees samples
    sent after it connected, so on a loaded machine the first few can precede the recording)."""
    for k in range(len(expected) - 50):
        if np.allclose(data[:50], expected[k:k + 50], atol=2e-3):
            return k
    raise AssertionError("recorded samples are not the simulator's")


def _wait_recorded(part_path, last_sample, timeout=20.0):
    """Wait until the recorder's CSV ends with `last_sample` (the sender's last one, to CSV precision)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lines = part_path.read_text().split("\n")
            # lines[-1] is what follows the last newline: possibly a row still being written
            if len(lines) > 2 and np.allclose(np.array(lines[-2].split(",")[2:], dtype=float), last_sample,
                                              atol=2e-3):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("the recorder never got the sender's last sample")


def test_recording_survives_a_stream_drop_and_round_trips(tmp_path):
    sid, marker_name = f"test-{uuid.uuid4().hex[:10]}", f"markers-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo(marker_name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, marker_name)
    markers = pylsl.StreamOutlet(info)
    stop, stop_first, stop_second = threading.Event(), threading.Event(), threading.Event()
    out, meta_path, part_path = tmp_path / "session1", tmp_path / "session1.json", tmp_path / "session1.csv.part"
    sent = 43 * 12  # 2 s at 256 Hz, rounded up to whole 12-sample chunks
    result = {}
    recorder = threading.Thread(target=lambda: result.setdefault("path", record(
        out, LSLSourceConfig(source_id=sid, resolve_timeout_s=2.0, backoff_initial_s=0.1, backoff_max_s=0.3),
        stop=stop, markers_name=marker_name, flush_every_s=0.2)), daemon=True)
    recorder.start()
    try:
        first = _sim(sid, 2.0, seed=21, stop=stop_first)
        wait_meta(meta_path, lambda m: m["samples"] > 0 and m["marker_stream"])
        markers.push_sample(["stim_on"])
        _wait_recorded(part_path, _expected(21, sent)[-1])
        stop_first.set()  # the sender goes away
        first.join(20)
        time.sleep(0.6)  # the stream is gone for a while; the recorder keeps running
        during_drop = wait_meta(meta_path, lambda m: m["source_stats"]["reconnects"] >= 1)
        assert during_drop["complete"] is False and part_path.exists()
        second = _sim(sid, 2.0, seed=22, stop=stop_second)
        wait_meta(meta_path, lambda m: m["connects"] == 2)
        markers.push_sample(["stim_off"])
        _wait_recorded(part_path, _expected(22, sent)[-1])
        stop_second.set()
        second.join(20)
    finally:
        stop_first.set()
        stop_second.set()
        stop.set()
        recorder.join(20)
    assert result["path"] == tmp_path / "session1.csv"
    assert not part_path.exists()

    rec = load_recording(tmp_path / "session1")
    assert rec.channels == LABELS and rec.rate == FS and rec.meta["complete"] is True
    assert rec.meta["connects"] == 2 and rec.meta["stream"]["manufacturer"].startswith("Muse-like")
    assert 2 * sent * 0.6 <= len(rec.timestamps) <= 2 * sent
    assert np.all(np.diff(rec.timestamps) > 0)
    # the drop is in the metadata, where the timestamps jump
    drops = [g for g in rec.gaps if g["reconnect"]]
    assert len(drops) == 1 and drops[0]["seconds"] > 0.5
    jump = int(np.argmax(np.diff(rec.timestamps)))
    assert rec.timestamps[jump] == pytest.approx(drops[0]["start"])
    assert rec.timestamps[jump + 1] == pytest.approx(drops[0]["end"])
    # samples are the simulator's own, consecutive, to CSV precision (float32 sent, 4 decimals kept)
    part1, part2 = rec.data[:jump + 1], rec.data[jump + 1:]
    exp1, exp2 = _expected(21, 600), _expected(22, 600)
    k1, k2 = _offset_in(exp1, part1), _offset_in(exp2, part2)
    np.testing.assert_allclose(part1, exp1[k1:k1 + len(part1)], atol=2e-3)
    np.testing.assert_allclose(part2, exp2[k2:k2 + len(part2)], atol=2e-3)
    assert len(part1) + k1 == sent and len(part2) + k2 == sent  # nothing lost until the sender closed
    # markers with their times, inside the recording and on the right side of the drop
    assert [label for _, label in rec.markers] == ["stim_on", "stim_off"]
    on, off = rec.markers[0][0], rec.markers[1][0]
    assert rec.timestamps[0] < on < rec.timestamps[jump] < rec.timestamps[jump + 1] < off < rec.timestamps[-1] + 0.5
    assert abs(rec.unix_times[0] - rec.meta["started_unix"]) < 20.0
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
    # The replay takes 0.47 s and connecting up to 2 s: the sender stays open until the reader has everything
    # (stop), as liblsl drops samples still waiting in an inlet when the sender closes.
    cfg = SimulatorConfig(source_id=sid, replay=str(tmp_path / "r.csv"), speed=5, wait_for_consumer_s=5,
                          linger_s=30.0)
    thread = threading.Thread(target=run_simulator, args=(cfg, stop), daemon=True)
    thread.start()
    src = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0, backoff_max_s=0.5))
    src.start()
    chunks, deadline = [], time.monotonic() + 20
    try:
        while sum(len(c.timestamps) for c in chunks) < 600 and time.monotonic() < deadline:
            chunk = src.read(timeout=0.2)
            if chunk is not None:
                chunks.append(chunk)
    finally:
        src.stop()
        stop.set()
        thread.join(5)
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
