"""Config validation names the key; the simulator CLI runs as a module and streams."""

import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from edge.eeg.config import EEGConfig
from edge.eeg.simulator import SimulatorConfig, parse_segments
from edge.errors import EdgeError
from edge.sources.lsl import LSLSource, LSLSourceConfig

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_valid():
    EEGConfig().validate()
    SimulatorConfig().validate()
    LSLSourceConfig().validate()


@pytest.mark.parametrize("key, value", [
    ("channels", ("AF7",)), ("left_frontal", "Fp1"), ("required_channels", ("AF7", "Oz")),
    ("bandpass_low_hz", 50.0), ("filter_order", 3), ("notch_hz", 100.0), ("window_s", 0.5),
    ("hop_s", 5.0), ("welch_segment_s", 0.1), ("flat_uv", 0.0), ("saturated_fraction", 2.0),
    ("baseline_s", 1.0), ("warmup_s", 1000.0), ("classifier_features", "raw"), ("calibration", ""),
])
def test_eeg_config_errors_name_the_key(key, value):
    with pytest.raises(EdgeError, match=rf"eeg\.{key} ="):
        EEGConfig(**{key: value}).validate()


def test_a_calibration_path_and_a_model_together_are_refused():
    with pytest.raises(EdgeError, match=r"eeg\.calibration = .*eeg\.model is set"):
        EEGConfig(calibration="/tmp/calibration.json", model="models/eeg.onnx").validate()
    EEGConfig(calibration="auto", model="models/eeg.onnx").validate()


@pytest.mark.parametrize("key, value", [("chunk", 0), ("asymmetry", 9.0), ("flat_channels", ("Cz",)),
                                        ("speed", 0.0), ("mains_hz", 200.0)])
def test_simulator_config_errors_name_the_key(key, value):
    with pytest.raises(EdgeError, match=rf"simulator\.{key} ="):
        SimulatorConfig(**{key: value}).validate()


def test_segments_parse_and_reject_garbage():
    segments = parse_segments("30:0:3, 20:0.6:5")
    assert [(s.duration_s, s.asymmetry, s.beta_uv) for s in segments] == [(30, 0, 3), (20, 0.6, 5)]
    with pytest.raises(EdgeError, match="SECONDS"):
        parse_segments("ten:0:3")


def test_simulator_module_streams_muse_like_data():
    sid = f"test-{uuid.uuid4().hex[:10]}"
    # The CLI streams without waiting for a consumer: 8 s leaves room for a slow interpreter start, the source's
    # retries (short backoff) and its clock-offset probe.
    proc = subprocess.Popen([sys.executable, "-m", "edge.eeg.simulator", "--source-id", sid, "--duration", "8",
                             "--blinks", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    src = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=1.0, backoff_max_s=0.5))
    src.start()
    try:
        assert src.wait_connected(30.0)
        chunks = []
        # The first chunk holds what queued up while connecting; the rate is measured over 2 s of arrivals after it.
        while sum(len(c.data) for c in chunks) < 512 or chunks[-1].received - chunks[0].received < 2.0:
            chunk = src.read(timeout=3.0)
            assert chunk is not None
            chunks.append(chunk)
        x = np.concatenate([c.data for c in chunks])
        assert x.shape[1] == 5 and src.description.labels[:4] == ("TP9", "AF7", "AF8", "TP10")
        assert 5 < np.std(x[:, 1]) < 60  # microvolt-scale EEG
        assert 180 < src.stats()["effective_rate_hz"] < 330
    finally:
        src.stop()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]
    assert "sent" in out
