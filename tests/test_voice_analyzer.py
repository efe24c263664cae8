"""The voice analyzer end to end: a real WAV through the file source into a real ONNX model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edge.backends import open_model
from edge.errors import EdgeError
from edge.observation import Observation
from edge.sources.audio import AudioFileConfig, AudioFileSource, AudioWindow
from edge.voice.analyzer import DEFAULT_LABELS, VoiceAnalyzer
from edge.voice.config import VoiceConfig
from edge.voice.features import FEATURE_SIZE, FeatureExtractor
from tests.speech import speak

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

def linear_softmax_model(directory, weights: np.ndarray, bias: np.ndarray, input_shape=(1, FEATURE_SIZE, 1)):
    """A real ONNX classifier (reshape, matmul, softmax) and its manifest."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["features", "flat_shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "W"], ["logits_nobias"]),
         helper.make_node("Add", ["logits_nobias", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "voice_test",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [input_shape[0], weights.shape[1]])],
        [numpy_helper.from_array(np.array([-1, FEATURE_SIZE], dtype=np.int64), "flat_shape"),
         numpy_helper.from_array(weights.astype(np.float32), "W"),
         numpy_helper.from_array(bias.astype(np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    artifact = directory / "voice.onnx"
    onnx.save(model, str(artifact))
    manifest = {
        "schema": "emotion-edge/manifest/1", "model_id": "voice-test", "task": "classification",
        "modality": "voice", "format": "onnx", "precision": "fp32",
        "artifact": {"file": artifact.name, "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest()},
        "labels": list(DEFAULT_LABELS),
        "inputs": [{"name": "features", "shape": list(input_shape), "dtype": "float32"}],
        "outputs": [{"name": "probabilities", "shape": [input_shape[0], weights.shape[1]], "dtype": "float32"}],
        "preprocessing": {}, "quantization": {}, "source": {},
    }
    (directory / "voice.onnx.json").write_text(json.dumps(manifest))
    return open_model(artifact)


@pytest.fixture()
def speech_file(tmp_path):
    samples, rate = speak(tmp_path / "speech.wav",
                          "I am so happy to see you today, this is really wonderful news for all of us.", "en-us", 150)
    return tmp_path / "speech.wav", samples, rate


def window_of(x, rate, start=0.0):
    return AudioWindow(np.asarray(x, dtype=np.float32), rate, 0, start, 0.0, "mic")


def test_speech_file_gives_one_raw_observation_per_window(tmp_path, speech_file):
    path, samples, rate = speech_file
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.01, (FEATURE_SIZE, 4))
    model = linear_softmax_model(tmp_path, weights, np.zeros(4))
    analyzer = VoiceAnalyzer(model, DEFAULT_LABELS, VoiceConfig(label_threshold=0.0))
    source = AudioFileSource(AudioFileConfig(path=str(path), realtime=False, window_s=2.5, hop_s=1.0))
    source.start()
    results = []
    while (window := source.read(timeout=5)) is not None:
        observations = analyzer.process(window)
        assert len(observations) == 1
        results.append((window, observations[0]))
    source.stop()
    speech = [(w, o) for w, o in results if o.probabilities is not None]
    assert len(speech) >= 2
    extractor = FeatureExtractor()
    for window, obs in speech:
        assert isinstance(obs, Observation) and obs.modality == "voice" and obs.subject == "room"
        assert obs.timestamp == pytest.approx(window.timestamp + window.duration)
        # No smoothing: the observation's probabilities are the model's softmax of this window's features.
        vector = extractor.extract(window.samples - np.float32(window.samples.mean())).astype(np.float64)
        logits = vector @ weights
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        got = np.array([obs.probabilities[label] for label in DEFAULT_LABELS])
        np.testing.assert_allclose(got, expected, atol=2e-3)
        assert obs.label == DEFAULT_LABELS[int(np.argmax(expected))]
        assert obs.model["id"] == "voice-test" and obs.model["sha256"] == model.manifest.sha256
        assert -1 <= obs.valence <= 1 and 0 <= obs.quality <= 1 and 0 <= obs.confidence <= 1
        json.dumps(dict(obs.extra))
    health = analyzer.health()
    assert health["classified"] == len(speech) and health["windows"] == len(results)
    assert analyzer.models()["voice.model"]["artifact"] == "voice.onnx"
    assert [o.kind for o in analyzer.close()] == ["end"] and analyzer.close() == []


def test_label_and_valence_only_above_the_threshold(tmp_path, speech_file):
    path, samples, rate = speech_file
    bias = np.array([0.0, 4.0, 0.0, 0.0])  # "happy" with p = e^4 / (e^4 + 3) = 0.948
    model = linear_softmax_model(tmp_path, np.zeros((FEATURE_SIZE, 4)), bias)
    window = AudioWindow(samples[:int(2.5 * rate)], rate, 0, 1_700_000_000.0, 0.0, "mic")
    shown = VoiceAnalyzer(model, config=VoiceConfig(label_threshold=0.9)).process(window)[0]
    assert shown.label == "happy" and shown.valence == pytest.approx(0.81 * 0.948 + (0.45 - 0.64 - 0.60) * 0.0174,
                                                                      abs=0.01)
    assert shown.extra["uncertain"] is False and shown.estimator == "classifier"
    assert shown.confidence == pytest.approx(shown.quality * (0.948 - 0.9) / 0.1, abs=0.02)
    hidden = VoiceAnalyzer(model, config=VoiceConfig(label_threshold=0.95)).process(window)[0]
    assert hidden.label is None and hidden.valence is None and hidden.confidence is None
    assert hidden.extra["uncertain"] is True and hidden.probabilities["happy"] == pytest.approx(0.948, abs=1e-3)
    default = VoiceAnalyzer(model).process(window)[0]
    assert default.label is None, "the default threshold (1.0) never labels"


def test_resampled_microphone_rate_gives_nearly_the_same_probabilities(tmp_path, speech_file):
    soxr = pytest.importorskip("soxr")
    path, samples, rate = speech_file
    rng = np.random.default_rng(3)
    model = linear_softmax_model(tmp_path, rng.normal(0, 0.01, (FEATURE_SIZE, 4)), np.zeros(4))
    segment = samples[:int(2.5 * rate)]
    native = VoiceAnalyzer(model).process(window_of(segment, rate))[0]
    at48k = soxr.resample(segment, rate, 48000, "VHQ")
    resampled = VoiceAnalyzer(model).process(window_of(at48k, 48000))[0]
    for label in DEFAULT_LABELS:
        assert resampled.probabilities[label] == pytest.approx(native.probabilities[label], abs=0.05)


def test_silence_clipping_dc_nan_are_no_data_not_neutral(tmp_path, speech_file):
    path, samples, rate = speech_file
    model = linear_softmax_model(tmp_path, np.zeros((FEATURE_SIZE, 4)), np.zeros(4))
    analyzer = VoiceAnalyzer(model)
    n = int(2.5 * rate)
    speech = samples[:n]

    def skipped(x):
        (obs,) = analyzer.process(window_of(x, rate))
        if obs.extra.get("skipped"):
            assert obs.valence is None and obs.arousal is None and obs.confidence is None and obs.label is None
            assert obs.quality is None and obs.probabilities is None and not obs.has_data
        return obs.extra.get("skipped")

    assert skipped(np.zeros(n)) == "silence"
    assert skipped(np.clip(speech * 20, -1, 1)) == "clipping"
    clipped_problems = analyzer.health()["last"]["vad"]["problems"]
    with_nan = speech.copy()
    with_nan[500] = np.nan
    assert skipped(with_nan) == "nonfinite"
    noise = np.random.default_rng(0).normal(0, 0.01, n)
    skipped(noise)  # teaches the noise floor
    assert skipped(noise) == "no_speech"
    assert skipped(speech[:1000]) == "too_short"
    (dc,) = analyzer.process(window_of(speech + 0.2, rate))
    assert dc.extra.get("skipped") is None and "dc_offset" in dc.extra["vad"]["problems"]
    health = analyzer.health()
    assert health["silence"] == 1 and health["clipping"] == 1 and health["nonfinite"] == 1
    assert health["no_speech"] == 2 and health["too_short"] == 1
    assert health["dc_offset"] == 1 + ("dc_offset" in clipped_problems)
    assert health["classified"] == 1 and health["windows"] == 7


def test_dc_is_removed_before_features(tmp_path, speech_file):
    path, samples, rate = speech_file
    model = linear_softmax_model(tmp_path, np.random.default_rng(5).normal(0, 0.01, (FEATURE_SIZE, 4)), np.zeros(4))
    speech = samples[:int(2.5 * rate)]
    clean = VoiceAnalyzer(model).analyse(window_of(speech, rate))[0]
    shifted = VoiceAnalyzer(model).analyse(window_of(speech + 0.2, rate))[0]
    np.testing.assert_allclose(shifted[:52], clean[:52], atol=0.05)


def test_no_smoothing_inside_the_analyzer(tmp_path, speech_file):
    """Consecutive windows are independent: the shared smoother, not the analyzer, averages them."""
    path, samples, rate = speech_file
    model = linear_softmax_model(tmp_path, np.random.default_rng(7).normal(0, 0.02, (FEATURE_SIZE, 4)), np.zeros(4))
    n = int(2.5 * rate)
    first, second = (window_of(samples[s:s + n], rate) for s in (0, rate))
    analyzer = VoiceAnalyzer(model)
    analyzer.process(first)
    after_first = analyzer.process(second)[0]
    alone = VoiceAnalyzer(model).process(second)[0]
    for label in DEFAULT_LABELS:
        assert after_first.probabilities[label] == pytest.approx(alone.probabilities[label], abs=1e-9)


def test_without_a_model_only_prosody_and_activity(speech_file):
    path, samples, rate = speech_file
    (obs,) = VoiceAnalyzer(None).process(window_of(samples[:int(2.5 * rate)], rate))
    assert obs.label is None and obs.probabilities is None and obs.valence is None
    assert obs.arousal is None and obs.extra["prosody"]["warming_up"] and obs.extra["vad"]["speech_fraction"] > 0.5


def test_configuration_errors(tmp_path):
    with pytest.raises(EdgeError, match="voice.smoothing_alpha"):
        VoiceAnalyzer(None, config=VoiceConfig(smoothing_alpha=0))
    with pytest.raises(EdgeError, match="voice.label_threshold"):
        VoiceAnalyzer(None, config=VoiceConfig(label_threshold=1.5))
    with pytest.raises(EdgeError, match="voice.prosody_warmup_windows"):
        VoiceAnalyzer(None, config=VoiceConfig(prosody_warmup_windows=1))
    with pytest.raises(EdgeError, match="no valence/arousal"):
        VoiceAnalyzer(None, labels=["calm", "bored"])
    model = linear_softmax_model(tmp_path, np.zeros((FEATURE_SIZE, 4)), np.zeros(4))
    with pytest.raises(EdgeError, match="4 outputs but 3 labels"):
        VoiceAnalyzer(model, labels=["calm", "happy", "fearful"])
    with pytest.raises(EdgeError, match="source rate"):
        VoiceAnalyzer.check_source_rate(22051)
    VoiceAnalyzer.check_source_rate(48000)
