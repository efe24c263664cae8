"""Train a small log-mel CNN for speech emotion on your own recordings, then export it.

Data is a RAVDESS-layout folder (`03-01-EMOTION-INTENSITY-STATEMENT-REPETITION-ACTOR.wav`, the
emotion and actor read from the name) or a CSV with columns path,label[,speaker]. Speakers are
split into train and test so no voice is in both: the accuracy reported is on people the model
never heard. Each recording is cut into the device's overlapping windows and each window becomes
a log-mel image (`edge.voice.logmel`, numpy alone, so the device computes the same input). The
network is a few conv blocks with batch norm, global average pooling and softmax, in the spirit
of spectrogram CNN/ResNet speech-emotion models, kept small enough for a Raspberry Pi.
Beside the JSON report it writes `confusion.svg` (held-out windows) and `learning_curve.svg`
(training and held-out accuracy per epoch).
"""

from __future__ import annotations

import csv
import logging
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.affect import CIRCUMPLEX
from edge.reportplots import write_training_plots
from edge.voice.logmel import LogMelConfig, log_mel
from edge.voice.resample import resample

from .bundle import ModelSpec, check_bars, export_classifier, staged_directory, write_json
from .errors import ExportError
from .evaluation import evaluate, format_evaluation
from .voice_data import cut_windows

log = logging.getLogger(__name__)

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fearful", "07": "disgust", "08": "surprised"}
RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


@dataclass
class TrainVoiceConfig:
    """How `emotion-export train-voice` trains and evaluates."""

    SECTION = "train_voice"

    # Classes to keep (None = every label found in the data).
    labels: list[str] | None = None
    # Passes over the training windows.
    epochs: int = 30
    # Windows per gradient step.
    batch_size: int = 16
    # Adam learning rate.
    learning_rate: float = 2e-3
    # Share of speakers held out for testing (at least one speaker).
    test_fraction: float = 0.25
    # Seconds between the starts of training windows (the window length is logmel.window_s).
    hop_s: float = 0.5
    # Channels of the conv blocks; one block per entry, each halving time and frequency.
    channels: tuple[int, ...] = (16, 32, 48)
    # Dropout before the classifier.
    dropout: float = 0.3
    # At most this many training windows calibrate the int8 quantizers.
    max_calibration: int = 400
    # Random seed for the speaker split, shuffling and weight initialisation.
    seed: int = 0
    # Log-mel frontend parameters (recorded in the manifest).
    logmel: LogMelConfig = field(default_factory=LogMelConfig)

    def validate(self) -> None:
        s = self.SECTION
        if self.labels is not None:
            unknown = [label for label in self.labels if label.lower() not in CIRCUMPLEX]
            if len(self.labels) < 2 or unknown:
                raise ExportError(f"{s}.labels needs at least two labels with a valence/arousal coordinate "
                                  f"(edge.affect.CIRCUMPLEX); unknown: {unknown}")
        if not 1 <= self.epochs <= 1000:
            raise ExportError(f"{s}.epochs = {self.epochs!r} must be between 1 and 1000")
        if not 1 <= self.batch_size <= 4096:
            raise ExportError(f"{s}.batch_size = {self.batch_size!r} must be between 1 and 4096")
        if not 0 < self.learning_rate < 1:
            raise ExportError(f"{s}.learning_rate = {self.learning_rate!r} must be in (0, 1)")
        if not 0 < self.test_fraction < 1:
            raise ExportError(f"{s}.test_fraction = {self.test_fraction!r} must be in (0, 1)")
        if not 0 < self.hop_s <= self.logmel.window_s:
            raise ExportError(f"{s}.hop_s = {self.hop_s!r} must be in (0, logmel window_s]")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ExportError(f"{s}.channels must be positive channel counts, one per conv block")
        if not 0 <= self.dropout < 1:
            raise ExportError(f"{s}.dropout = {self.dropout!r} must be in [0, 1)")
        if self.max_calibration < 10:
            raise ExportError(f"{s}.max_calibration = {self.max_calibration!r} must be at least 10")
        self.logmel.validate()


@dataclass
class Recording:
    path: Path
    label: str
    speaker: str


def ravdess_recording(path: Path) -> Recording | None:
    """Label and actor from a RAVDESS file name, or None if the name is not in that layout."""
    match = RAVDESS_NAME.match(path.stem)
    if not match or match.group(3) not in RAVDESS_EMOTIONS:
        return None
    return Recording(path, RAVDESS_EMOTIONS[match.group(3)], f"actor{match.group(7)}")


def read_dataset(data: Path) -> tuple[list[Recording], str]:
    """(recordings, how speakers were identified) from a RAVDESS folder or a CSV."""
    if not data.exists():
        raise ExportError(f"--data {data} does not exist; give a RAVDESS-layout folder or a CSV path,label[,speaker]")
    if data.is_dir():
        wavs = sorted(data.rglob("*.wav"))
        recordings = [r for r in map(ravdess_recording, wavs) if r is not None]
        if not recordings:
            raise ExportError(f"no RAVDESS-named .wav files (03-01-EMOTION-..-ACTOR.wav) under {data}")
        if len(recordings) < len(wavs):
            log.warning("ignored %d .wav files without RAVDESS names", len(wavs) - len(recordings))
        return recordings, "RAVDESS actor field"
    with open(data, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        if not {"path", "label"} <= columns:
            raise ExportError(f"{data} needs a header with columns path,label[,speaker]; found {sorted(columns)}")
        recordings = []
        for line, row in enumerate(reader, start=2):
            if not row["path"] or not row["label"]:
                raise ExportError(f"{data} line {line}: empty path or label")
            path = Path(row["path"])
            path = path if path.is_absolute() else data.parent / path
            speaker = (row.get("speaker") or "").strip() or f"file:{path.name}"
            recordings.append(Recording(path, row["label"].strip().lower(), speaker))
    if not recordings:
        raise ExportError(f"{data} lists no recordings")
    how = "speaker column" if "speaker" in columns else "none given: each file is its own speaker"
    return recordings, how


def split_by_speaker(recordings: list[Recording], test_fraction: float, seed: int) -> tuple[list[Recording], list[Recording]]:
    """Train and test recordings with disjoint speakers."""
    speakers = sorted({r.speaker for r in recordings})
    if len(speakers) < 2:
        raise ExportError(f"all recordings are from one speaker ({speakers[0]}); a speaker-independent test "
                          "needs at least two speakers")
    random.Random(seed).shuffle(speakers)
    held_out = set(speakers[:max(1, min(len(speakers) - 1, math.ceil(len(speakers) * test_fraction)))])
    return ([r for r in recordings if r.speaker not in held_out], [r for r in recordings if r.speaker in held_out])


def load_audio(path: Path, rate: int) -> np.ndarray:
    import soundfile

    try:
        samples, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise ExportError(f"cannot read audio {path}: {exc}") from None
    mono = samples.mean(axis=1)
    if mono.size == 0 or not np.all(np.isfinite(mono)):
        raise ExportError(f"{path} is empty or has non-finite samples")
    return resample(mono, source_rate, rate) if source_rate != rate else mono


def windows_of(recordings: list[Recording], labels: list[str], config: TrainVoiceConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log-mel images, label indices, recording index) over every window of every recording."""
    images, targets, owners = [], [], []
    for index, recording in enumerate(recordings):
        audio = load_audio(recording.path, config.logmel.rate)
        for window in cut_windows(audio, config.logmel.rate, config.logmel.window_s, config.hop_s):
            images.append(log_mel(window, config.logmel))
            targets.append(labels.index(recording.label))
            owners.append(index)
    return np.stack(images), np.asarray(targets), np.asarray(owners)


def build_model(input_shape: tuple[int, ...], classes: int, config: TrainVoiceConfig):
    """Conv(3x3)-BN-ReLU-MaxPool blocks, global average pooling, dropout, softmax."""
    import keras

    inputs = keras.Input(shape=input_shape, name="logmel")
    x = inputs
    for width in config.channels:
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        # Momentum 0.9: small sets give few steps, and 0.99 leaves the moving statistics near their
        # initial values, so inference would disagree with training.
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(config.dropout)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="voice_logmel_cnn")


def per_epoch(history) -> dict[str, list[float]]:
    """Training and held-out accuracy and loss after each epoch, rounded for the report."""
    names = {"accuracy": "train_accuracy", "val_accuracy": "held_out_accuracy", "loss": "train_loss",
             "val_loss": "held_out_loss"}
    return {name: [round(float(v), 4) for v in history.history[key]] for key, name in names.items()}


def learning_curves(training: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Accuracy per epoch for `learning_curve.svg`. Training accuracy is Keras' running mean over each epoch
    with dropout on, so it reads lower than the model's accuracy at the epoch's end."""
    epochs = training["per_epoch"]
    return {"train (running, dropout on)": list(enumerate(epochs["train_accuracy"], start=1)),
            "held-out": list(enumerate(epochs["held_out_accuracy"], start=1))}


def train_voice(data: Path, out_dir: Path, config: TrainVoiceConfig | None = None) -> dict[str, Any]:
    """Train on `data`, evaluate on held-out speakers, export into `out_dir`; return the report."""
    from .convert import quiet_tensorflow

    config = config or TrainVoiceConfig()
    config.validate()
    quiet_tensorflow()
    import keras

    recordings, speaker_source = read_dataset(data)
    found = sorted({r.label for r in recordings})
    labels = list(config.labels) if config.labels else found
    missing = [label for label in labels if label not in found]
    if missing:
        raise ExportError(f"no recordings for labels {missing}; found {found}")
    unmapped = [label for label in labels if label not in CIRCUMPLEX]
    if unmapped:
        raise ExportError(f"labels {unmapped} have no valence/arousal coordinate; pick --labels from "
                          f"{sorted(CIRCUMPLEX)} or add them to edge.affect.CIRCUMPLEX")
    recordings = [r for r in recordings if r.label in labels]
    train, test = split_by_speaker(recordings, config.test_fraction, config.seed)
    x_train, y_train, _ = windows_of(train, labels, config)
    x_test, y_test, owners = windows_of(test, labels, config)
    log.info("training on %d windows (%d recordings), testing on %d windows (%d recordings)",
             len(x_train), len(train), len(x_test), len(test))

    keras.utils.set_random_seed(config.seed)
    model = build_model(config.logmel.shape, len(labels), config)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    counts = np.bincount(y_train, minlength=len(labels))
    if np.any(counts == 0):
        raise ExportError(f"the training speakers have no recordings of {[labels[i] for i in np.flatnonzero(counts == 0)]};"
                          " record every class with several speakers")
    weights = {i: float(len(y_train) / (len(labels) * c)) for i, c in enumerate(counts)}
    # The held-out windows are scored after each epoch for the learning curve only: nothing is selected on them.
    history = model.fit(x_train, y_train, epochs=config.epochs, batch_size=config.batch_size, shuffle=True,
                        class_weight=weights, validation_data=(x_test, y_test), verbose=0)
    probs = model.predict(x_test, batch_size=64, verbose=0)
    clip_probs = np.stack([probs[owners == i].mean(0) for i in range(len(test))])
    clip_targets = np.asarray([labels.index(r.label) for r in test])
    evaluation = {"windows": evaluate(probs, y_test, labels), "recordings": evaluate(clip_probs, clip_targets, labels)}
    evaluation["text"] = format_evaluation(evaluation["windows"], evaluation["recordings"], "speakers",
                                           "recordings")
    split = {"speaker_source": speaker_source, "train_speakers": sorted({r.speaker for r in train}),
             "test_speakers": sorted({r.speaker for r in test}), "train_recordings": len(train),
             "test_recordings": len(test), "train_windows": int(len(x_train)), "test_windows": int(len(x_test))}
    log.info("%s", evaluation["text"])

    rng = np.random.default_rng(config.seed)
    calibration = x_train[rng.permutation(len(x_train))[:config.max_calibration]]
    description = (f"{data.name}: calibration {len(calibration)} training windows from speakers "
                   f"{', '.join(split['train_speakers'])}; validation {len(x_test)} windows of held-out speakers "
                   f"{', '.join(split['test_speakers'])}")
    spec = ModelSpec(
        name="voice", model_id=f"voice-emotion-logmel-cnn-{data.stem}", task="voice_emotion", modality="voice",
        labels=labels, input_shape=config.logmel.shape, layout="NHWC (H = mel bands, W = frames)",
        preprocessing={**config.logmel.to_manifest(), "hop_s": config.hop_s},
        output_meaning="softmax probabilities over labels",
        source={"package": None, "trained_by": "emotion-export train-voice", "data": str(data), "license": "user",
                "architecture": f"log-mel CNN, conv blocks {list(config.channels)}, BN, GAP, softmax",
                "parameters": int(model.count_params()), "epochs": config.epochs, "seed": config.seed},
        calibration=calibration, validation=x_test, data_description=description, keras_model=model,
        extra={"evaluation": {k: v for k, v in evaluation.items() if k != "text"}, "split": split},
    )
    with staged_directory(out_dir) as stage:
        rows = export_classifier(spec, stage)
        model.save(stage / "voice.keras")
        report = {"modality": "voice", "data": description, "artifacts": rows, "bars": check_bars(rows),
                  "evaluation": evaluation, "split": split,
                  "training": {"final_loss": round(float(history.history["loss"][-1]), 4),
                               "final_accuracy": round(float(history.history["accuracy"][-1]), 4),
                               "per_epoch": per_epoch(history)}}
        write_json(stage / "parity.json", report)
        write_training_plots(stage, evaluation["windows"]["confusion_matrix"], learning_curves(report["training"]),
                             "train-voice")
        write_json(stage / "evaluation.json", {"split": split, **{k: v for k, v in evaluation.items() if k != "text"}})
    return report
