"""EEG emotion models (TSception and a DE-feature MLP) and their export through `export_classifier`.

TSception (Ding et al., "TSception: Capturing Temporal Dynamics and Spatial Asymmetry from EEG
for Emotion Recognition", IEEE Trans. Affective Computing 2022), written here from the paper:
- temporal learner: three parallel convolutions along time with kernels of 0.5, 0.25 and 0.125 of
  the sampling rate (multi-scale: ~2, 4, 8 Hz and faster rhythms), each followed by a "power"
  layer, concatenated along time. The paper's power layer is square, average pool, log; here it is
  rectify and average pool (mean amplitude of the learned band), because int8 quantization of
  squared-then-logged activity was measured to break the model (45% top-1 agreement with float),
  while the amplitude form keeps a linear range int8 represents well;
- asymmetric spatial learner: a global kernel over all channels and a hemisphere kernel of height
  channels / 2 with the same stride, so with the Muse order (TP9, AF7 | AF8, TP10) it sees the
  left pair and the right pair separately; both with power layers (3 rows: global, left, right);
- fusion layer: a convolution over those 3 rows, power layer, then average over time, a small
  hidden layer with dropout and softmax. Batch norm follows each learner.
Sizes are cut down for a Muse at 128 Hz (4 channels, 4 s = 512 samples, 8/8 filters).

DE model: dense network on channels x bands differential entropy (the device's
`FeatureSet.vector("de")`), standardized outside the model with mean/std kept in the manifest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.eeg.config import EEGConfig
from edge.eeg.features import BANDS

from .bundle import ModelSpec

MODEL_RATE = 128.0


_RECTIFY_LAYER = []


def _power_layer():
    """The Rectify layer class, defined once (Keras is imported lazily: the export pipeline only)."""
    if _RECTIFY_LAYER:
        return _RECTIFY_LAYER[0]
    import keras

    @keras.saving.register_keras_serializable(package="emotion_edge")
    class Rectify(keras.layers.Layer):
        """|x|: with average pooling, the mean amplitude of a filtered signal (a band-power proxy)."""

        def call(self, x):
            return keras.ops.abs(x)

    _RECTIFY_LAYER.append(Rectify)
    return Rectify


def _power(x, pool: int, step: int, name: str):
    import keras

    x = _power_layer()(name=f"{name}_rectify")(x)
    return keras.layers.AveragePooling2D((1, pool), strides=(1, step), name=f"{name}_pool")(x)


def _power1d(x, pool: int, name: str):
    import keras

    x = _power_layer()(name=f"{name}_rectify")(x)
    return keras.layers.AveragePooling1D(pool, strides=pool, name=f"{name}_pool")(x)


def tsception(channels: int = 4, samples: int = 512, classes: int = 3, rate: float = MODEL_RATE,
              num_t: int = 8, num_s: int = 8, hidden: int = 16, dropout: float = 0.3, pool: int = 8):
    """TSception for (channels, samples, 1) inputs whose rows pair up left/right hemisphere halves."""
    import keras

    if channels % 2:
        raise ValueError("TSception's hemisphere kernel needs an even channel count (left half, right half)")
    inputs = keras.Input(shape=(channels, samples, 1), name="eeg")
    branches = []
    for fraction in (0.5, 0.25, 0.125):
        k = max(2, int(fraction * rate))
        t = keras.layers.Conv2D(num_t, (1, k), padding="valid", name=f"temporal_{k}")(inputs)
        branches.append(_power(t, pool, pool, f"temporal_{k}"))
    x = keras.layers.Concatenate(axis=2, name="temporal_concat")(branches)
    x = keras.layers.BatchNormalization(momentum=0.9, name="temporal_bn")(x)
    # From here time is the sequence axis: (time, EEG channels, filters). The global kernel over
    # all channels is a 1x1 convolution over channels x filters; the hemisphere kernel slides over
    # the channel axis with stride channels / 2. Same maths as the paper's (channels, 1) and
    # (channels / 2, 1) kernels; this layout converts cleanly to ONNX, whose converter mislabels
    # shapes when a row axis collapses to 1 in the original layout.
    x = keras.layers.Permute((2, 1, 3), name="time_first")(x)
    steps = x.shape[1]
    whole = keras.layers.Reshape((steps, channels * num_t), name="channels_x_filters")(x)
    whole = keras.layers.Conv1D(num_s, 1, name="spatial_global")(whole)
    half = channels // 2
    hemi = keras.layers.Conv2D(num_s, (1, half), strides=(1, half), name="spatial_hemisphere")(x)
    hemi = keras.layers.Reshape((steps, 2 * num_s), name="left_right")(hemi)
    x = keras.layers.Concatenate(axis=-1, name="spatial_concat")(
        [_power1d(whole, 2, "spatial_global"), _power1d(hemi, 2, "spatial_hemisphere")])
    x = keras.layers.BatchNormalization(momentum=0.9, name="spatial_bn")(x)
    # Fusion over the 3 rows (global, left, right): a 1x1 convolution over their filters.
    x = keras.layers.Conv1D(num_s, 1, name="fusion")(x)
    x = _power1d(x, 4, "fusion")
    x = keras.layers.BatchNormalization(momentum=0.9, name="fusion_bn")(x)
    x = keras.layers.GlobalAveragePooling1D(name="time_mean")(x)
    x = keras.layers.Dense(hidden, activation="relu", name="hidden")(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tsception")


def de_mlp(features: int = 20, classes: int = 3, hidden: tuple[int, ...] = (32, 16), dropout: float = 0.2):
    """Dense ReLU layers with dropout on standardized DE features, softmax output."""
    import keras

    inputs = keras.Input(shape=(features,), name="de")
    x = inputs
    for width in hidden:
        x = keras.layers.Dense(width, activation="relu")(x)
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="eeg_de_mlp")


def preprocessing(config: EEGConfig, kind: str, stream_rate: float, **extra: Any) -> dict[str, Any]:
    """Manifest `preprocessing`: what the device must do to a window before the model sees it."""
    record = {
        "input": kind,
        "channels": list(config.channels),
        "channel_order": "left hemisphere then right, mirrored pairs (TP9, AF7 | AF8, TP10)",
        "rate_hz": stream_rate,
        "window_s": config.window_s,
        "hop_s": config.hop_s,
        "bandpass_hz": [config.bandpass_low_hz, config.bandpass_high_hz],
        "filter": f"Butterworth order {config.filter_order} per edge, causal, edge.eeg.filters.Preprocessor",
        "notch_hz": config.notch_hz,
        "notch_q": config.notch_q,
        "rejected_windows": "not classified (edge.eeg.quality checks, as in training)",
        "computed_by": "edge.eeg.classifier.load_eeg_classifier",
    }
    if kind == "de":
        record.update(feature_kind="de", bands={k: list(v) for k, v in BANDS.items()},
                      welch_segment_s=config.welch_segment_s,
                      features="differential entropy 0.5*ln(2*pi*e*band power), channel-major",
                      feature_names=[f"de_{c}_{b}" for c in config.channels for b in BANDS])
    else:
        record.update(feature_kind="window", resample="FFT (edge.eeg.classifier.resample_window)",
                      layout="(channels, samples, 1)")
    record.update(extra)
    return record


def model_spec(model, kind: str, labels: list[str], prep: dict[str, Any], calibration: np.ndarray,
               validation: np.ndarray, data_description: str, source: dict[str, Any],
               extra: dict[str, Any]) -> ModelSpec:
    """The ModelSpec `export_classifier` turns into TFLite / ONNX artifacts with manifests."""
    name = "eeg_tsception" if kind == "window" else "eeg_de"
    return ModelSpec(
        name=name, model_id=f"eeg-emotion-{'tsception' if kind == 'window' else 'de-mlp'}", task="eeg_emotion",
        modality="eeg", labels=list(labels), input_shape=tuple(int(v) for v in calibration.shape[1:]),
        layout="NHWC (H = channels, W = time samples)" if kind == "window" else "NC (standardized DE features)",
        preprocessing=prep, output_meaning="softmax probabilities over labels", source=source,
        calibration=calibration, validation=validation, data_description=data_description, keras_model=model,
        extra=extra)
