"""The voice pipeline end to end: a real WAV through the file source into a real ONNX model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edge.backends import open_model
from edge.errors import EdgeError
from edge.events import EVENT_JSON_SCHEMA
from edge.sources.audio import AudioFileConfig, AudioFileSource, AudioWindow
from edge.voice import DEFAULT_LABELS, FEATURE_SIZE, FeatureExtractor, VoiceConfig, VoicePipeline
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


def test_speech_file_to_schema_valid_events(tmp_path, speech_file):
    jsonschema = pytest.importorskip("jsonschema")
    path, samples, rate = speech_file
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.01, (FEATURE_SIZE, 4))
    model = linear_softmax_model(tmp_path, weights, np.zeros(4))
    pipeline = VoicePipeline(model, DEFAULT_LABELS, VoiceConfig(smoothing_alpha=1.0), device_id="kiosk-1")
    source = AudioFileSource(AudioFileConfig(path=str(path), realtime=False, window_s=2.5, hop_s=1.0))
    source.start()
    events = []
    while (window := source.read(timeout=5)) is not None:
        event = pipeline.process(window)
        if event is not None:
            events.append((window, event))
    source.stop()
    assert len(events) >= 2
    extractor = FeatureExtractor()
    for window, event in events:
        jsonschema.validate(json.loads(event.to_json()), EVENT_JSON_SCHEMA)
        assert event.modality == "voice" and event.track_id == "speech" and event.device_id == "kiosk-1"
        # With smoothing off, the event's probabilities are the model's softmax of the features.
        vector = extractor.extract(window.samples - np.float32(window.samples.mean())).astype(np.float64)
        logits = vector @ weights
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        got = np.array([event.probabilities[label] for label in DEFAULT_LABELS])
        np.testing.assert_allclose(got, expected, atol=2e-3)
        assert event.label == DEFAULT_LABELS[int(np.argmax(expected))]
        assert event.model["id"] == "voice-test" and event.model["sha256"] == model.manifest.sha256
        assert -1 <= event.valence <= 1 and -1 <= event.arousal <= 1
    health = pipeline.health()
    assert health["classified"] == len(events) and health["windows"] >= len(events)


def test_valence_arousal_follow_the_winning_label(tmp_path, speech_file):
    path, samples, rate = speech_file
    bias = np.array([0.0, 20.0, 0.0, 0.0])  # always "happy"
    model = linear_softmax_model(tmp_path, np.zeros((FEATURE_SIZE, 4)), bias)
    pipeline = VoicePipeline(model, DEFAULT_LABELS)
    window = AudioWindow(samples[:int(2.5 * rate)], rate, 0, 1_700_000_000.0, 0.0, "mic")
    event = pipeline.process(window)
    assert event.label == "happy" and event.confidence > 0.99
    assert event.valence == pytest.approx(0.81, abs=0.01) and event.arousal == pytest.approx(0.51, abs=0.01)
    assert event.timestamp == "2023-11-14T22:13:20.000Z"


def test_resampled_microphone_rate_gives_nearly_the_same_event(tmp_path, speech_file):
    librosa = pytest.importorskip("librosa")
    path, samples, rate = speech_file
    rng = np.random.default_rng(3)
    model = linear_softmax_model(tmp_path, rng.normal(0, 0.01, (FEATURE_SIZE, 4)), np.zeros(4))
    segment = samples[:int(2.5 * rate)]
    native = VoicePipeline(model).process(AudioWindow(segment, rate, 0, 0.0, 0.0, "mic"))
    at48k = librosa.resample(segment, orig_sr=rate, target_sr=48000, res_type="soxr_vhq")
    resampled = VoicePipeline(model).process(AudioWindow(at48k, 48000, 0, 0.0, 0.0, "mic"))
    for label in DEFAULT_LABELS:
        assert resampled.probabilities[label] == pytest.approx(native.probabilities[label], abs=0.05)


def test_silence_clipping_dc_nan_are_counted_not_classified(tmp_path, speech_file):
    path, samples, rate = speech_file
    model = linear_softmax_model(tmp_path, np.zeros((FEATURE_SIZE, 4)), np.zeros(4))
    pipeline = VoicePipeline(model)
    n = int(2.5 * rate)
    speech = samples[:n]

    def window(x):
        return AudioWindow(np.asarray(x, dtype=np.float32), rate, 0, 0.0, 0.0, "mic")

    assert pipeline.process(window(np.zeros(n))) is None
    assert pipeline.process(window(np.clip(speech * 20, -1, 1))) is None
    clipped_problems = pipeline.health()["last"]["vad"]["problems"]
    assert "clipping" in clipped_problems
    with_nan = speech.copy()
    with_nan[500] = np.nan
    assert pipeline.process(window(with_nan)) is None
    noise = np.random.default_rng(0).normal(0, 0.01, n)
    pipeline.process(window(noise))  # teaches the noise floor
    assert pipeline.process(window(noise)) is None
    assert pipeline.process(window(speech[:1000])) is None
    dc_event = pipeline.process(window(speech + 0.2))
    assert dc_event is not None and "dc_offset" in dc_event.extra["vad"]["problems"]
    health = pipeline.health()
    assert health["silence"] == 1 and health["clipping"] == 1 and health["nonfinite"] == 1
    assert health["no_speech"] == 2 and health["too_short"] == 1
    assert health["dc_offset"] == 1 + ("dc_offset" in clipped_problems)
    assert health["classified"] == 1 and health["windows"] == 7


def test_dc_is_removed_before_features(tmp_path, speech_file):
    path, samples, rate = speech_file
    model = linear_softmax_model(tmp_path, np.random.default_rng(5).normal(0, 0.01, (FEATURE_SIZE, 4)), np.zeros(4))
    speech = samples[:int(2.5 * rate)]
    clean = VoicePipeline(model, config=VoiceConfig(smoothing_alpha=1.0)).analyse(
        AudioWindow(speech, rate, 0, 0.0, 0.0, "mic"))[0]
    shifted = VoicePipeline(model, config=VoiceConfig(smoothing_alpha=1.0)).analyse(
        AudioWindow(speech + 0.2, rate, 0, 0.0, 0.0, "mic"))[0]
    np.testing.assert_allclose(shifted[:52], clean[:52], atol=0.05)


def test_smoothing_averages_windows(tmp_path, speech_file):
    path, samples, rate = speech_file
    model = linear_softmax_model(tmp_path, np.random.default_rng(7).normal(0, 0.02, (FEATURE_SIZE, 4)), np.zeros(4))
    raw = VoicePipeline(model, config=VoiceConfig(smoothing_alpha=1.0))
    smooth = VoicePipeline(model, config=VoiceConfig(smoothing_alpha=0.5))
    n = int(2.5 * rate)
    windows = [AudioWindow(samples[s:s + n], rate, s, 0.0, 0.0, "mic") for s in (0, rate)]
    r = [raw.process(w) for w in windows]
    s = [smooth.process(w) for w in windows]
    for label in DEFAULT_LABELS:
        assert s[0].probabilities[label] == pytest.approx(r[0].probabilities[label])
        expected = 0.5 * r[1].probabilities[label] + 0.5 * r[0].probabilities[label]
        assert s[1].probabilities[label] == pytest.approx(expected, abs=1e-6)


def test_without_a_model_events_report_activity_only(speech_file):
    path, samples, rate = speech_file
    event = VoicePipeline(None).process(AudioWindow(samples[:int(2.5 * rate)], rate, 0, 0.0, 0.0, "mic"))
    assert event.label is None and event.probabilities == {} and event.extra["vad"]["speech_fraction"] > 0.5


def test_configuration_errors(tmp_path):
    with pytest.raises(EdgeError, match="voice.smoothing_alpha"):
        VoicePipeline(None, config=VoiceConfig(smoothing_alpha=0))
    with pytest.raises(EdgeError, match="no valence/arousal"):
        VoicePipeline(None, labels=["calm", "bored"])
    model = linear_softmax_model(tmp_path, np.zeros((FEATURE_SIZE, 4)), np.zeros(4))
    with pytest.raises(EdgeError, match="4 outputs but 3 labels"):
        VoicePipeline(model, labels=["calm", "happy", "fearful"])
    with pytest.raises(EdgeError, match="source rate"):
        VoicePipeline.check_source_rate(22051)
    VoicePipeline.check_source_rate(48000)
