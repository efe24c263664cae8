"""Voice export: the pinned RAVDESS Conv1D speech-emotion model, quantized and checked on real speech.

The model (audioanalytics 0.1.3, `model_85`) was saved by Keras 2.3 as an architecture JSON and
an HDF5 weight file. Keras 3 cannot read that JSON (no module paths, `batch_input_shape`), so the
layers are rebuilt from it here and the weights are copied from the HDF5 file by layer and weight
name with h5py, each shape checked. Its labels, in output order, are those of the package's
`predict.py` (`observed_emotions`): calm, happy, fearful, disgust.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.voice.features import FEATURE_SIZE, HOP, MODEL_RATE, N_CHROMA, N_FFT, N_MELS, N_MFCC

from . import voice_data
from .bundle import ModelSpec, check_bars, export_classifier, staged_directory, write_json
from .errors import ExportError
from .sources import PINNED, fetch

log = logging.getLogger(__name__)

RAVDESS_LABELS = ["calm", "happy", "fearful", "disgust"]
# Layer types model_85 uses, and the config keys Keras 3 no longer accepts.
SUPPORTED_LAYERS = ("Conv1D", "Flatten", "Dense", "Dropout", "MaxPooling1D", "Activation", "BatchNormalization")
LEGACY_KEYS = ("batch_input_shape", "input_dtype")
FEATURES_PREPROCESSING = {
    "features": "librosa-compatible means of 40 MFCC, 12 chroma_stft, 128 mel, ZCR at 22050 Hz",
    "computed_by": "edge.voice.features.FeatureExtractor",
    "sample_rate": MODEL_RATE, "n_fft": N_FFT, "hop_length": HOP, "window": "hann (periodic), centred frames",
    "pad_mode": "constant", "order": ["mfcc", "chroma", "mel", "zcr"],
    "sizes": {"mfcc": N_MFCC, "chroma": N_CHROMA, "mel": N_MELS, "zcr": 1},
    "chroma_tuning": "estimated per window (librosa default)",
    "window_s": 2.5, "input": f"({FEATURE_SIZE}, 1): the feature vector as one channel", "scale": 1.0,
}


@dataclass
class VoiceExportOptions:
    """What `emotion-export voice` builds."""

    out_dir: Path
    cache: Path | None = None
    speech: voice_data.SpeechConfig | None = None


def keras2_layers(config: dict) -> tuple[tuple[int, ...], list[dict]]:
    """(input shape, layer configs) of a Keras 2 Sequential JSON, cleaned for Keras 3."""
    if config.get("class_name") != "Sequential":
        raise ExportError(f"expected a Keras Sequential model JSON, got {config.get('class_name')!r}")
    layers = config["config"]["layers"] if isinstance(config["config"], dict) else config["config"]
    shape = None
    cleaned = []
    for layer in layers:
        name = layer["class_name"]
        if name not in SUPPORTED_LAYERS:
            raise ExportError(f"layer type {name} in the voice model JSON is not supported by this loader")
        cfg = dict(layer["config"])
        if "batch_input_shape" in cfg and shape is None:
            shape = tuple(cfg["batch_input_shape"][1:])
        for key in LEGACY_KEYS:
            cfg.pop(key, None)
        cleaned.append({"class_name": name, "config": cfg})
    if shape is None:
        raise ExportError("the voice model JSON gives no input shape (batch_input_shape)")
    return shape, cleaned


def load_keras2_model(json_path: Path, weights_path: Path):
    """A Keras 3 model with the layers of a Keras 2 JSON and the weights of its HDF5 file."""
    import h5py
    import keras

    shape, layer_configs = keras2_layers(json.loads(json_path.read_text()))
    # A functional graph (not Sequential): tf2onnx resolves its output names under Keras 3.
    inputs = x = keras.Input(shape=shape, name="features")
    for item in layer_configs:
        x = getattr(keras.layers, item["class_name"]).from_config(item["config"])(x)
    model = keras.Model(inputs, x, name="ravdess_model_85")
    with h5py.File(weights_path, "r") as h5:
        group = h5["model_weights"] if "model_weights" in h5 else h5
        stored = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in stored:
                raise ExportError(f"{weights_path.name} has no weights for layer {layer.name}")
            entry = group[layer.name]
            names = [n.decode() if isinstance(n, bytes) else n for n in entry.attrs["weight_names"]]
            values = [np.asarray(entry[n]) for n in names]
            expected = [tuple(w.shape) for w in layer.weights]
            if [v.shape for v in values] != expected:
                raise ExportError(f"layer {layer.name}: stored weight shapes {[v.shape for v in values]} do not "
                                  f"match the architecture's {expected}")
            layer.set_weights(values)
    return model


def check_trained(model) -> dict[str, Any]:
    """Evidence the weights are the trained ones: every bias moved away from its zero initializer."""
    biases = {layer.name: float(np.abs(layer.weights[1].numpy()).mean())
              for layer in model.layers if len(layer.weights) == 2}
    untouched = [name for name, value in biases.items() if value == 0.0]
    if untouched:
        raise ExportError(f"layers {untouched} still have all-zero biases: the weights were not loaded")
    return {"mean_abs_bias": {k: round(v, 5) for k, v in biases.items()}}


def check_real_speech(model, features: np.ndarray) -> dict[str, Any]:
    """The float model on real speech: how confident and how varied its decisions are."""
    probs = model.predict(features[..., None], batch_size=64, verbose=0)
    counts = np.bincount(probs.argmax(1), minlength=len(RAVDESS_LABELS))
    summary = {"windows": int(len(features)), "mean_top_probability": round(float(probs.max(1).mean()), 4),
               "decisions": {label: int(c) for label, c in zip(RAVDESS_LABELS, counts)}}
    if np.count_nonzero(counts) < 2:
        raise ExportError(f"the voice model gives one decision for all real speech windows ({summary}): "
                          "the loaded model is not working")
    return summary


def pinned_model(cache: Path | None = None):
    return load_keras2_model(fetch("ravdess-voice-json", cache), fetch("ravdess-voice-weights", cache))


def export_voice(options: VoiceExportOptions) -> dict[str, Any]:
    """Write the voice artifacts into `options.out_dir` (atomically) and return the parity report."""
    from .convert import quiet_tensorflow

    quiet_tensorflow()
    speech = options.speech or voice_data.SpeechConfig()
    model = pinned_model(options.cache)
    trained = check_trained(model)
    calibration = voice_data.speech_set(voice_data.CALIBRATION_VOICES, speech)
    validation = voice_data.speech_set(voice_data.VALIDATION_VOICES, speech)
    sanity = check_real_speech(model, validation.features)
    source = {**PINNED["ravdess-voice-json"].record(), "weights": PINNED["ravdess-voice-weights"].record()}
    description = (f"espeak-ng speech, {len(calibration)} calibration windows from voices "
                   f"{', '.join(voice_data.CALIBRATION_VOICES)}; {len(validation)} validation windows from "
                   f"other voices {', '.join(voice_data.VALIDATION_VOICES)} (rates {speech.rates} wpm, pitches "
                   f"{speech.pitches}, plus gain {speech.gain} and {speech.noise_snr_db} dB SNR copies)")
    spec = ModelSpec(
        name="voice", model_id="voice-emotion-ravdess-conv1d-model85", task="voice_emotion", modality="voice",
        labels=list(RAVDESS_LABELS), input_shape=(FEATURE_SIZE, 1), layout="NWC",
        preprocessing=dict(FEATURES_PREPROCESSING), output_meaning="softmax probabilities over labels",
        source=source, calibration=calibration.features[..., None], validation=validation.features[..., None],
        data_description=description, keras_model=model,
    )
    with staged_directory(options.out_dir) as stage:
        rows = export_classifier(spec, stage)
        bars = check_bars(rows)
        report = {"modality": "voice", "data": description, "artifacts": rows, "bars": bars,
                  "loaded_model": {**trained, "real_speech": sanity}}
        write_json(stage / "parity.json", report)
    return report
