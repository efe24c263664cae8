"""`emotion-export train-eeg`: train TSception or a DE-feature MLP on EEG and export it for the device.

Data (see `export.eeg_data`): a folder of the project's recordings labelled by `label:<name>` /
`end` markers, DREAMER.mat, or SEED's folder. Windows are cut and checked by the device's own chain.
Train and test are split by GROUP (whole trials, or whole subjects when there are enough of them),
so no trial has windows on both sides; the accuracy reported is on trials the model never saw.
The trained model goes through `export_classifier` (TFLite fp32/fp16/int8, ONNX fp32/int8) with
training windows as calibration and held-out windows as validation.
Beside the JSON report it writes `confusion.svg` (held-out windows) and `learning_curve.svg`
(training and held-out accuracy per epoch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.affect import CIRCUMPLEX
from edge.eeg.config import EEGConfig
from edge.errors import EdgeError
from edge.reportplots import write_training_plots

from . import eeg, eeg_data
from .bundle import export_classifier, staged_directory, write_json
from .errors import ExportError
from .evaluation import evaluate, format_evaluation
from .train_voice import learning_curves, per_epoch

log = logging.getLogger(__name__)

MODELS = ("tsception", "de")
GROUPINGS = ("auto", "trial", "subject")
# Parity bars for EEG artifacts against the Keras model on held-out windows.
FP32_MIN_AGREEMENT, FP32_MAX_PROB_ERROR, INT8_MIN_AGREEMENT = 1.0, 1e-4, 0.90


@dataclass
class TrainEEGConfig:
    """How `emotion-export train-eeg` trains and evaluates (section `train_eeg`)."""

    SECTION = "train_eeg"

    # "tsception" (filtered window) or "de" (differential-entropy features).
    model: str = "de"
    # Classes to keep (None = every label found).
    labels: list[str] | None = None
    # Passes over the training windows (None = 30 for tsception, 80 for de).
    epochs: int | None = None
    # Windows per gradient step.
    batch_size: int = 32
    # Adam learning rate (None = 1e-2 for tsception, 3e-3 for de).
    learning_rate: float | None = None
    # Share of groups (trials or subjects) held out for testing.
    test_fraction: float = 0.25
    # Split unit: "trial", "subject", or "auto" (subject when there are >= 4 subjects).
    group_by: str = "auto"
    # DREAMER score binarized at > 3: "valence" (negative/positive) or "arousal" (low_/high_arousal).
    dreamer_target: str = "valence"
    # At most this many training windows calibrate the int8 quantizers.
    max_calibration: int = 300
    # Random seed for the split, shuffling and weight initialisation.
    seed: int = 0
    # The device's EEG chain (filters, window length, hop, quality checks) windows are cut with.
    eeg: EEGConfig = field(default_factory=EEGConfig)

    def validate(self) -> TrainEEGConfig:
        s = self.SECTION
        if self.model not in MODELS:
            raise ExportError(f"{s}.model = {self.model!r} must be one of {list(MODELS)}")
        if self.labels is not None and len(self.labels) < 2:
            raise ExportError(f"{s}.labels needs at least two classes")
        if self.epochs is not None and not 1 <= self.epochs <= 1000:
            raise ExportError(f"{s}.epochs = {self.epochs!r} must be between 1 and 1000")
        if not 1 <= self.batch_size <= 4096:
            raise ExportError(f"{s}.batch_size = {self.batch_size!r} must be between 1 and 4096")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise ExportError(f"{s}.learning_rate = {self.learning_rate!r} must be in (0, 1)")
        if not 0 < self.test_fraction < 1:
            raise ExportError(f"{s}.test_fraction = {self.test_fraction!r} must be in (0, 1)")
        if self.group_by not in GROUPINGS:
            raise ExportError(f"{s}.group_by = {self.group_by!r} must be one of {list(GROUPINGS)}")
        if self.dreamer_target not in ("valence", "arousal"):
            raise ExportError(f"{s}.dreamer_target = {self.dreamer_target!r} must be valence or arousal")
        if self.max_calibration < 10:
            raise ExportError(f"{s}.max_calibration = {self.max_calibration!r} must be at least 10")
        try:
            self.eeg.validate()
        except EdgeError as exc:
            raise ExportError(str(exc)) from None
        return self


def group_split(labels: list[str], trials: list[str], subjects: list[str], test_fraction: float, seed: int,
                group_by: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """(train mask, test mask, unit): whole trials or whole subjects on one side, every class on both."""
    labels_a, trials_a, subjects_a = np.asarray(labels), np.asarray(trials), np.asarray(subjects)
    if group_by == "auto":
        group_by = "subject" if len(set(subjects)) >= 4 else "trial"
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    if group_by == "trial":
        test_trials: list[str] = []
        for label in classes:
            own = sorted(set(trials_a[labels_a == label]))
            if len(own) < 2:
                raise ExportError(f"class {label!r} has {len(own)} trial; record at least two trials per class so "
                                  "one can be held out")
            count = min(len(own) - 1, max(1, round(test_fraction * len(own))))
            test_trials += list(rng.permutation(own)[:count])
        test = np.isin(trials_a, test_trials)
        return ~test, test, "trial"
    people = sorted(set(subjects))
    if len(people) < 2:
        raise ExportError("a subject split needs at least two subjects; use group_by = trial")
    count = min(len(people) - 1, max(1, round(test_fraction * len(people))))
    for _ in range(200):
        test = np.isin(subjects_a, rng.permutation(people)[:count])
        if set(labels_a[test]) == set(classes) and set(labels_a[~test]) == set(classes):
            return ~test, test, "subject"
    raise ExportError("no subject split puts every class on both sides; use group_by = trial or more subjects")


def eeg_bars(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """EEG parity bars: fp32 artifacts match the Keras model exactly in decisions, int8 in >= 90%."""
    bars = []
    for row in rows:
        if row["precision"] == "fp32":
            ok = row["top1_agreement"] >= FP32_MIN_AGREEMENT and row["max_abs_prob_error"] < FP32_MAX_PROB_ERROR
            bars.append({"bar": f"{row['artifact']}: top-1 agreement 100% and max |dp| < 1e-4",
                         "measured": [row["top1_agreement"], row["max_abs_prob_error"]], "passed": bool(ok)})
        elif row["precision"] == "int8":
            bars.append({"bar": f"{row['artifact']}: top-1 agreement >= 90%", "measured": row["top1_agreement"],
                         "passed": row["top1_agreement"] >= INT8_MIN_AGREEMENT})
    return bars


def train_eeg(data: Path, out_dir: Path, config: TrainEEGConfig | None = None) -> dict[str, Any]:
    """Train on `data`, evaluate on held-out groups, export into `out_dir`; return the report."""
    from .convert import quiet_tensorflow

    config = (config or TrainEEGConfig()).validate()
    quiet_tensorflow()
    import keras

    pieces, dataset = eeg_data.read_dataset(Path(data), config.dreamer_target)
    rates = sorted({p.rate for p in pieces})
    kind = "window" if config.model == "tsception" else "de"
    samples = round(config.eeg.window_s * eeg.MODEL_RATE)
    shape_info = {"model_rate_hz": eeg.MODEL_RATE, "samples": samples, "scale_uv": 1.0} if kind == "window" else {}
    found = sorted({s.label for p in pieces for s in p.spans})
    labels = list(config.labels) if config.labels else found
    missing = [label for label in labels if label not in found]
    if missing:
        raise ExportError(f"no trials labelled {missing}; found {found}")
    unmapped = [label for label in labels if label not in CIRCUMPLEX]
    if unmapped:
        raise ExportError(f"labels {unmapped} have no valence/arousal coordinate; use labels from "
                          f"{sorted(CIRCUMPLEX)} or add them to edge.affect.CIRCUMPLEX")
    prep = eeg.preprocessing(config.eeg, kind, rates[0], **shape_info)
    ws = eeg_data.windows(pieces, config.eeg, kind, prep)
    keep = np.isin(ws.labels, labels)
    x = ws.inputs[keep]
    y = np.asarray([labels.index(label) for label in np.asarray(ws.labels)[keep]])
    trials, subjects = list(np.asarray(ws.trials)[keep]), list(np.asarray(ws.subjects)[keep])
    train, test, unit = group_split([labels[i] for i in y], trials, subjects, config.test_fraction, config.seed,
                                    config.group_by)

    if kind == "de":
        mean = np.round(x[train].astype(np.float64).mean(0), 6)
        std = np.round(x[train].astype(np.float64).std(0) + 1e-6, 6)
        prep["standardize"] = {"mean": mean.tolist(), "std": std.tolist()}
        x = ((x - mean) / std).astype(np.float32)  # with the rounded values the manifest gives the device
    else:
        scale = float(np.round(x[train].std(), 4))
        x = (x / scale).astype(np.float32)
        prep["scale_uv"] = scale
    x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    log.info("%s: %d training windows, %d test windows (%d rejected, %d outside trials)",
             dataset, len(x_train), len(x_test), ws.rejected, ws.outside)

    keras.utils.set_random_seed(config.seed)
    if kind == "window":
        model = eeg.tsception(x.shape[1], x.shape[2], len(labels), eeg.MODEL_RATE)
        epochs, lr = config.epochs or 30, config.learning_rate or 1e-2
    else:
        model = eeg.de_mlp(x.shape[1], len(labels))
        epochs, lr = config.epochs or 80, config.learning_rate or 3e-3
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    counts = np.bincount(y_train, minlength=len(labels))
    weights = {i: float(len(y_train) / (len(labels) * c)) for i, c in enumerate(counts) if c}
    # The held-out windows are scored after each epoch for the learning curve only: nothing is selected on them.
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=config.batch_size, shuffle=True,
                        class_weight=weights, validation_data=(x_test, y_test), verbose=0)

    probs = model.predict(x_test, batch_size=256, verbose=0)
    test_trials = np.asarray(trials)[test]
    names = sorted(set(test_trials))
    trial_probs = np.stack([probs[test_trials == t].mean(0) for t in names])
    trial_targets = np.asarray([y_test[test_trials == t][0] for t in names])
    evaluation = {"windows": evaluate(probs, y_test, labels), "trials": evaluate(trial_probs, trial_targets, labels)}
    evaluation["text"] = format_evaluation(evaluation["windows"], evaluation["trials"], f"{unit}s", "trials")
    train_trials = sorted(set(np.asarray(trials)[train]))
    split = {"unit": unit, "train_trials": train_trials, "test_trials": names,
             "train_subjects": sorted(set(np.asarray(subjects)[train])),
             "test_subjects": sorted(set(np.asarray(subjects)[test])),
             "train_windows": len(x_train), "test_windows": len(x_test),
             "rejected_windows": ws.rejected, "windows_outside_trials": ws.outside}
    log.info("%s", evaluation["text"])

    rng = np.random.default_rng(config.seed)
    calibration = x_train[rng.permutation(len(x_train))[:config.max_calibration]]
    description = (f"{dataset} {Path(data).name}: calibration {len(calibration)} training windows; validation "
                   f"{len(x_test)} windows of {len(names)} held-out {unit}s")
    source = {"package": None, "trained_by": "emotion-export train-eeg", "data": str(data), "dataset": dataset,
              "license": "user", "parameters": int(model.count_params()), "epochs": epochs, "seed": config.seed,
              "architecture": ("TSception (Ding et al. 2022), multi-scale temporal + asymmetric spatial + fusion"
                               if kind == "window" else "MLP on standardized differential entropy")}
    extra = {"evaluation": {k: v for k, v in evaluation.items() if k != "text"}, "split": split}
    spec = eeg.model_spec(model, kind, labels, prep, calibration, x_test, description, source, extra)
    with staged_directory(Path(out_dir)) as stage:
        rows = export_classifier(spec, stage)
        model.save(stage / f"{spec.name}.keras")
        report = {"modality": "eeg", "data": description, "artifacts": rows, "bars": eeg_bars(rows),
                  "evaluation": evaluation, "split": split, "model": config.model, "labels": labels,
                  "training": {"final_loss": round(float(history.history["loss"][-1]), 4),
                               "final_accuracy": round(float(history.history["accuracy"][-1]), 4),
                               "per_epoch": per_epoch(history)}}
        write_json(stage / "parity.json", report)
        write_training_plots(stage, evaluation["windows"]["confusion_matrix"], learning_curves(report["training"]),
                             f"train-eeg ({config.model})")
        write_json(stage / "evaluation.json", {"split": split, **{k: v for k, v in evaluation.items() if k != "text"}})
    return report
