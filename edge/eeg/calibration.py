"""Per-wearer EEG calibration: a guided recording -> DE band features -> a numpy softmax regression.

Why: on real EEG (SEED, one subject) frontal alpha asymmetry did not separate positive from negative film
clips, while differential-entropy (DE) features of 4 Muse-like channels with a plain logistic regression
did, well above chance. EEG differs so much between people and placements that the model is per wearer.

`emotion-edge calibrate` records the LSL stream with the project's recorder while a built-in schedule
announces blocks ("relax", "think of something pleasant", "think of something unpleasant") and sends a
`label:<class>` marker at each block's start and `end` after it (the marker convention of
`emotion-export train-eeg`). Then, or with `--from-recording` on an existing recording:
- the device's own chain (`pipeline.extract_recording_features`: filters, windows, artefact rejection)
  cuts `window_s` (1 s) windows every `eeg.hop_s`; a window counts for a block when it lies wholly inside
  it after the first `settle_s` seconds (the wearer switching state); rejected windows are left out;
- the features are the DE of every channel x band (`features.BANDS`), standardised;
- a multinomial logistic regression with an L2 penalty is fitted by Newton's method (deterministic:
  same recording, same model);
- held-out accuracy is cross-validated over whole blocks (fold k holds out the k-th block of every class),
  never over shuffled windows, which overlap and would leak;
- the model trained on every block is written atomically to `<device.data_dir>/eeg/calibration.json`
  (weights, standardisation, channels, rate, bands, filters, classes with their circumplex coordinates,
  the accuracy), with `calibration-confusion.svg` beside it. A model that does not beat chance by
  `min_margin` is not installed (unless forced): it would only add noise under a confident-looking label.
The analyzer (`edge.eeg.analyzer`) then classifies the live stream's latest `window_s` at every hop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.affect import coordinates, valence_arousal
from edge.eeg.config import EEGConfig
from edge.eeg.features import BANDS
from edge.errors import EdgeError

log = logging.getLogger(__name__)

FORMAT = "emotion-edge/eeg-calibration/1"
FILENAME = "calibration.json"
CONFUSION_SVG = "calibration-confusion.svg"
MARKER_PREFIX, MARKER_END = "label:", "end"
# What the wearer is asked to do in each class's block (the built-in lab schedule).
INSTRUCTIONS = {
    "neutral": "relax: eyes open, rest your mind, breathe normally",
    "positive": "think of something pleasant: recall a happy moment in detail",
    "negative": "think of something unpleasant: recall an upsetting moment in detail",
}
DEFAULT_CLASSES = ("neutral", "positive", "negative")


@dataclass
class CalibrationSettings:
    """How a recording becomes a per-wearer model."""

    window_s: float = 1.0  # length of the classified window (the live analyzer uses the same)
    settle_s: float = 2.0  # seconds skipped after each block starts
    l2: float = 0.01  # L2 penalty on the standardised weights
    min_margin: float = 0.10  # held-out accuracy must beat chance by this much to be installed

    def validate(self) -> CalibrationSettings:
        if not 0.5 <= self.window_s <= 4.0:
            raise EdgeError(f"calibration window {self.window_s!r} s is not valid: expected 0.5 to 4 seconds")
        if not self.settle_s >= 0:
            raise EdgeError(f"calibration settle time {self.settle_s!r} s is not valid: expected >= 0 seconds")
        if not self.l2 > 0:
            raise EdgeError(f"calibration L2 penalty {self.l2!r} is not valid: expected a number > 0, e.g. 0.01")
        return self


def block_order(classes: Sequence[str], repeats: int) -> list[str]:
    """Every class once per round, the order rotated each round so no class always follows the same one."""
    classes = list(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise EdgeError(f"calibration needs at least two distinct classes, not {classes}")
    if repeats < 2:
        raise EdgeError(f"calibration needs each class at least twice (held-out blocks), not --repeats {repeats}")
    return [classes[(k + r) % len(classes)] for r in range(repeats) for k in range(len(classes))]


@dataclass
class Block:
    start: float  # LSL time of its label marker
    end: float  # next label/end marker, or the end of the recording
    label: str
    occurrence: int  # 0 for a class's first block, 1 for its second, ...


def marker_blocks(markers: Sequence[tuple[float, str]], end_time: float) -> list[Block]:
    """Labelled blocks from `label:<class>` ... (`label:...` | `end`) markers; other markers are ignored."""
    blocks, current, seen = [], None, {}
    for at, text in sorted(markers):
        text = text.strip()
        is_label = text.lower().startswith(MARKER_PREFIX)
        if not is_label and text.lower() != MARKER_END:
            continue
        if current is not None:
            blocks.append(Block(current[0], at, current[1], seen[current[1]]))
            seen[current[1]] += 1
            current = None
        if is_label:
            label = text[len(MARKER_PREFIX):].strip().lower()
            if not label:
                raise EdgeError(f"marker {text!r} names no class; send e.g. 'label:positive'")
            seen.setdefault(label, 0)
            current = (at, label)
    if current is not None:
        blocks.append(Block(current[0], end_time, current[1], seen[current[1]]))
    return blocks


def window_config(eeg: EEGConfig, window_s: float) -> EEGConfig:
    """The device chain's settings with the calibration window (Welch segments no longer than it)."""
    return replace(eeg, window_s=window_s, welch_segment_s=min(eeg.welch_segment_s, window_s),
                   hop_s=min(eeg.hop_s, window_s), baseline_s=max(eeg.baseline_s, window_s),
                   calibration="off", model="").validate()


def de_vector(features, channels: Sequence[str], bands: Sequence[str]) -> np.ndarray:
    """DE of the named channels x bands (channel-major), in the order the calibration stores."""
    rows = [features.channels.index(c) for c in channels]
    cols = [features.bands.index(b) for b in bands]
    return features.differential_entropy[np.ix_(rows, cols)].ravel()


@dataclass
class Dataset:
    x: np.ndarray  # (windows, features)
    y: np.ndarray  # class index per window
    block: np.ndarray  # block index per window
    fold: np.ndarray  # the block's occurrence (cross-validation fold) per window
    labels: list[str]
    blocks: list[Block]
    rejected: int  # windows inside blocks left out for artefacts
    outside: int  # windows not wholly inside one block (rest, settling, boundaries)


def recording_dataset(recording, eeg: EEGConfig, settings: CalibrationSettings,
                      classes: Sequence[str] | None = None) -> Dataset:
    """Labelled DE windows of a recording (edge.eeg.recorder.Recording), through the device's chain."""
    from edge.eeg.pipeline import extract_recording_features

    if not len(recording.timestamps):
        raise EdgeError("the recording holds no samples; record again while the headband streams")
    blocks = marker_blocks(recording.markers, float(recording.timestamps[-1]) + 1.0 / max(recording.rate, 1.0))
    if not blocks:
        raise EdgeError("the recording has no 'label:<class>' markers; record with `emotion-edge calibrate` (it "
                        "sends them) or send 'label:<class>' ... 'end' on an LSL Markers stream while recording")
    labels = list(classes) if classes else sorted({b.label for b in blocks})
    unknown = sorted({b.label for b in blocks} - set(labels))
    if unknown:
        log.info("ignoring blocks of classes %s (not among %s)", unknown, labels)
    blocks = [b for b in blocks if b.label in labels]
    for label in labels:
        coordinates(label)  # every class needs a place on the circumplex (KeyError names the fix)
    counts = {label: sum(b.label == label for b in blocks) for label in labels}
    if min(counts.values()) < 2:
        raise EdgeError(f"calibration needs at least two blocks of every class to hold one out, but the recording "
                        f"has {counts}; record with --repeats 2 or more")
    config = window_config(eeg, settings.window_s)
    results = extract_recording_features(recording.data, recording.timestamps, recording.channels,
                                         recording.rate, config)
    xs, ys, bs, folds = [], [], [], []
    rejected = outside = 0
    folds_n = min(counts.values())
    for result in results:
        t0, t1 = float(result.times[0]), float(result.times[-1])
        k = next((i for i, b in enumerate(blocks) if b.start + settings.settle_s <= t0 and t1 < b.end), None)
        if k is None:
            outside += 1
            continue
        if result.rejected:
            rejected += 1
            continue
        xs.append(de_vector(result.features, config.channels, tuple(BANDS)))
        ys.append(labels.index(blocks[k].label))
        bs.append(k)
        folds.append(blocks[k].occurrence % folds_n)
    if not xs:
        raise EdgeError(f"no clean {settings.window_s:g} s window lies inside a labelled block (rejected: {rejected}); "
                        "check the electrodes' contact and that blocks last longer than the settle time")
    return Dataset(np.asarray(xs), np.asarray(ys), np.asarray(bs), np.asarray(folds), labels, blocks,
                   rejected, outside)


class SoftmaxRegression:
    """Multinomial logistic regression on standardised features, L2-penalised, fitted by Newton's method."""

    def __init__(self, l2: float = 0.01):
        self.l2 = l2
        self.mean = self.std = self.weights = self.bias = None

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int, iterations: int = 50) -> SoftmaxRegression:
        x = np.asarray(x, dtype=np.float64)
        self.mean = x.mean(axis=0)
        self.std = np.maximum(x.std(axis=0), 1e-6)
        z = np.column_stack([(x - self.mean) / self.std, np.ones(len(x))])
        n, d = z.shape
        k = n_classes
        target = np.eye(k)[y]
        # Weights penalised by l2; the bias only by a whisker (softmax is unchanged by a shift of all biases).
        penalty = np.tile(np.r_[np.full(d - 1, self.l2), 1e-6], k)
        w = np.zeros(k * d)

        def loss(flat):
            logits = z @ flat.reshape(k, d).T
            logits -= logits.max(axis=1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            return -(target * log_p).sum() / n + 0.5 * (penalty * flat ** 2).sum(), np.exp(log_p)

        value, p = loss(w)
        for _ in range(iterations):
            grad = ((p - target).T @ z).ravel() / n + penalty * w
            hess = np.empty((k * d, k * d))
            for a in range(k):
                for b in range(a, k):
                    weight = p[:, a] * ((a == b) - p[:, b])
                    block = (z * weight[:, None]).T @ z / n
                    hess[a * d:(a + 1) * d, b * d:(b + 1) * d] = block
                    hess[b * d:(b + 1) * d, a * d:(a + 1) * d] = block.T
            hess[np.diag_indices_from(hess)] += penalty
            step = np.linalg.solve(hess, grad)
            scale = 1.0
            while True:  # backtracking: Newton steps can overshoot far from the optimum
                candidate = w - scale * step
                new_value, new_p = loss(candidate)
                if new_value <= value or scale < 1e-4:
                    break
                scale *= 0.5
            converged = value - new_value < 1e-10
            w, value, p = candidate, new_value, new_p
            if converged:
                break
        full = w.reshape(k, d)
        self.weights, self.bias = full[:, :-1], full[:, -1]
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(np.asarray(x, dtype=np.float64)) - self.mean) / self.std
        logits = z @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def cross_validate(data: Dataset, l2: float) -> dict[str, Any]:
    """Held-out accuracy over whole blocks: fold k trains on every other block and tests the k-th of each class."""
    k = len(data.labels)
    predicted = np.full(len(data.y), -1)
    for fold in np.unique(data.fold):
        test = data.fold == fold
        train = ~test
        if len(np.unique(data.y[train])) < k:
            raise EdgeError("a class has clean windows in only one block; record again with better contact")
        model = SoftmaxRegression(l2).fit(data.x[train], data.y[train], k)
        predicted[test] = model.predict_proba(data.x[test]).argmax(axis=1)
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (data.y, predicted), 1)
    per_class = {label: (round(float(counts[i, i] / counts[i].sum()), 4) if counts[i].sum() else None)
                 for i, label in enumerate(data.labels)}
    block_hits = []
    for b in np.unique(data.block):
        votes = np.bincount(predicted[data.block == b], minlength=k)
        block_hits.append(int(votes.argmax() == data.y[data.block == b][0]))
    accuracy = float((predicted == data.y).mean())
    chance = float(np.bincount(data.y, minlength=k).max() / len(data.y))
    return {
        "method": "leave-one-block-per-class-out",
        "folds": int(len(np.unique(data.fold))),
        "windows": int(len(data.y)),
        "accuracy": round(accuracy, 4),
        "chance": round(chance, 4),  # share of the most common class among the evaluated windows
        "per_class_accuracy": per_class,
        "block_accuracy": round(float(np.mean(block_hits)), 4),  # majority vote of each held-out block's windows
        "blocks": len(block_hits),
        "confusion_matrix": {"labels": list(data.labels), "counts": counts.tolist()},  # rows: true class
    }


def calibrate_recording(recording, eeg: EEGConfig, settings: CalibrationSettings | None = None,
                        classes: Sequence[str] | None = None, source: str = "") -> dict[str, Any]:
    """The calibration document for a recording: model trained on every block, held-out evaluation."""
    settings = (settings or CalibrationSettings()).validate()
    data = recording_dataset(recording, eeg, settings, classes)
    evaluation = cross_validate(data, settings.l2)
    model = SoftmaxRegression(settings.l2).fit(data.x, data.y, len(data.labels))
    config = window_config(eeg, settings.window_s)
    return {
        "format": FORMAT,
        "created_unix": time.time(),
        "recording": source,
        "channels": list(config.channels),
        "rate": float(recording.rate),
        "bands": {name: list(edges) for name, edges in BANDS.items()},
        "feature": "de",
        "window_s": settings.window_s,
        "welch_segment_s": config.welch_segment_s,
        "filters": {"bandpass_low_hz": config.bandpass_low_hz, "bandpass_high_hz": config.bandpass_high_hz,
                    "filter_order": config.filter_order, "notch_hz": config.notch_hz, "notch_q": config.notch_q},
        "settle_s": settings.settle_s,
        "labels": list(data.labels),
        "circumplex": {label: list(coordinates(label)) for label in data.labels},
        "standardize": {"mean": model.mean.tolist(), "std": model.std.tolist()},
        "weights": model.weights.tolist(),
        "bias": model.bias.tolist(),
        "l2": settings.l2,
        "training": {"windows": int(len(data.y)),
                     "windows_per_class": {label: int((data.y == i).sum()) for i, label in enumerate(data.labels)},
                     "blocks": len(data.blocks), "rejected_windows": data.rejected, "outside_windows": data.outside},
        "evaluation": evaluation,
    }


def installable(document: dict[str, Any], min_margin: float) -> bool:
    evaluation = document["evaluation"]
    return evaluation["accuracy"] >= evaluation["chance"] + min_margin


def save_calibration(path: str | os.PathLike, document: dict[str, Any]) -> Path:
    """Write atomically (temp file, fsync, rename) with the confusion matrix as an SVG beside it."""
    from edge.reportplots import confusion_matrix_svg, write_svg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    evaluation = document["evaluation"]
    write_svg(path.with_name(CONFUSION_SVG), confusion_matrix_svg(
        evaluation["confusion_matrix"]["counts"], evaluation["confusion_matrix"]["labels"],
        f"EEG calibration: held-out blocks, accuracy {evaluation['accuracy']:.0%} (chance {evaluation['chance']:.0%})"))
    return path


class Calibration:
    """A stored per-wearer model, ready to classify one window's FeatureSet."""

    def __init__(self, document: dict[str, Any], path: Path | None = None, sha256: str = ""):
        if document.get("format") != FORMAT:
            raise EdgeError(f"{path} is not an emotion-edge EEG calibration (format {document.get('format')!r}); "
                            "run `emotion-edge calibrate` again")
        self.document, self.path, self.sha256 = document, path, sha256
        self.labels = list(document["labels"])
        self.channels = tuple(document["channels"])
        self.rate = float(document["rate"])
        self.bands = tuple(document["bands"])
        self.window_s = float(document["window_s"])
        self.welch_segment_s = float(document["welch_segment_s"])
        model = SoftmaxRegression(float(document["l2"]))
        model.mean = np.asarray(document["standardize"]["mean"], dtype=np.float64)
        model.std = np.asarray(document["standardize"]["std"], dtype=np.float64)
        model.weights = np.asarray(document["weights"], dtype=np.float64)
        model.bias = np.asarray(document["bias"], dtype=np.float64)
        if model.weights.shape != (len(self.labels), len(self.channels) * len(self.bands)):
            raise EdgeError(f"{path}: weights of shape {model.weights.shape} do not fit {len(self.labels)} classes "
                            f"x {len(self.channels)} channels x {len(self.bands)} bands; run `emotion-edge calibrate` "
                            "again")
        self.model = model
        evaluation = document["evaluation"]
        self.accuracy, self.chance = float(evaluation["accuracy"]), float(evaluation["chance"])
        # Skill: how far held-out accuracy got from chance towards perfect (0 at chance, 1 at 100%).
        self.skill = float(np.clip((self.accuracy - self.chance) / max(1e-9, 1.0 - self.chance), 0.0, 1.0))
        self.model_id = f"eeg-calibration-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(document['created_unix']))}"

    def check(self, eeg: EEGConfig) -> None:
        """EdgeError naming the key when the device's [eeg] settings differ from the calibration's."""
        missing = [c for c in self.channels if c not in eeg.channels]
        if missing:
            raise EdgeError(f"the EEG calibration {self.path} uses channels {list(self.channels)} but eeg.channels "
                            f"lacks {missing}; add them, run `emotion-edge calibrate` again, or set "
                            "eeg.calibration = \"off\"")
        if tuple(self.bands) != tuple(BANDS) or any(list(BANDS[b]) != list(e)
                                                     for b, e in self.document["bands"].items()):
            raise EdgeError(f"the EEG calibration {self.path} was made with other frequency bands; run "
                            "`emotion-edge calibrate` again")
        for key, value in self.document["filters"].items():
            if getattr(eeg, key) != value:
                raise EdgeError(f"eeg.{key} = {getattr(eeg, key)!r} but the EEG calibration {self.path} was made "
                                f"with {value!r}; set eeg.{key} = {value!r} or run `emotion-edge calibrate` again")

    def check_stream(self, rate: float) -> None:
        if abs(rate - self.rate) > 1e-6:
            raise EdgeError(f"the EEG stream runs at {rate:g} Hz but the calibration {self.path} was recorded at "
                            f"{self.rate:g} Hz; run `emotion-edge calibrate` again with this headband")

    def classify(self, features) -> tuple[str, dict[str, float], float, float]:
        """(label, probabilities, valence, arousal) of one window."""
        p = self.model.predict_proba(de_vector(features, self.channels, self.bands))[0]
        valence, arousal = valence_arousal(self.labels, p)
        return self.labels[int(p.argmax())], dict(zip(self.labels, map(float, p))), valence, arousal

    def describe(self) -> dict[str, Any]:
        return {"id": self.model_id, "sha256": self.sha256, "path": str(self.path) if self.path else None,
                "estimator": "calibrated", "labels": self.labels, "accuracy": self.accuracy, "chance": self.chance,
                "windows": self.document["training"]["windows"], "window_s": self.window_s}


def load_calibration(path: str | os.PathLike) -> Calibration:
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EdgeError(f"cannot read the EEG calibration {path}: {exc.strerror}; run `emotion-edge calibrate` "
                        "or set eeg.calibration = \"off\"") from None
    try:
        document = json.loads(raw)
        return Calibration(document, path, hashlib.sha256(raw).hexdigest())
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeError(f"the EEG calibration {path} is damaged ({type(exc).__name__}: {exc}); run "
                        "`emotion-edge calibrate` again") from None


def default_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir).expanduser() / "eeg" / FILENAME


def resolve_calibration(eeg: EEGConfig, data_dir: str | os.PathLike | None) -> Path | None:
    """Which calibration the analyzer uses: eeg.calibration "off" none, a path that file (it must exist),
    "auto" `<data_dir>/eeg/calibration.json` when it exists and no eeg.model is set."""
    if eeg.calibration == "off":
        return None
    if eeg.calibration == "auto":
        if eeg.model or data_dir is None:
            return None
        path = default_path(data_dir)
        return path if path.exists() else None
    path = Path(eeg.calibration).expanduser()
    if not path.is_file():
        raise EdgeError(f"eeg.calibration = {eeg.calibration!r} does not exist; run `emotion-edge calibrate`, or "
                        "set eeg.calibration = \"auto\" or \"off\"")
    return path


# -- the guided session --------------------------------------------------------------------------------
def guided_recording(stem: Path, app, order: Sequence[str], block_s: float, rest_s: float,
                     announce: Callable[[str], None] = print, stop: threading.Event | None = None,
                     connect_timeout_s: float = 30.0) -> Path:
    """Record the EEG stream while announcing each block and sending its markers; returns the CSV path."""
    from edge.eeg.recorder import record
    from edge.eeg.simulator import make_marker_outlet

    if not block_s > 0 or rest_s < 0:
        raise EdgeError(f"blocks need --block > 0 and --rest >= 0 seconds, not {block_s}, {rest_s}")
    stop = stop or threading.Event()
    name = f"emotion-edge-calibration-{os.getpid()}"
    outlet = make_marker_outlet(name, name)
    done = threading.Event()
    result: dict[str, Any] = {}

    def recorder() -> None:
        try:
            result["csv"] = record(stem, app.lsl, stop=done, markers_name=name, flush_every_s=0.5)
        except BaseException as exc:  # handed to the announcing thread
            result["error"] = exc

    thread = threading.Thread(target=recorder, name="calibration-recorder", daemon=True)
    thread.start()
    meta_path = stem.with_suffix(".json")
    announce(f"Waiting for the EEG stream and for the recorder to see the markers (up to {connect_timeout_s:g} s)...")
    deadline = time.monotonic() + connect_timeout_s
    while not _ready(meta_path):
        if "error" in result or not thread.is_alive():
            raise result.get("error") or EdgeError("the recorder stopped before the session started")
        if time.monotonic() > deadline or stop.is_set():
            done.set()
            thread.join(10)
            raise EdgeError(f"no EEG stream was recorded within {connect_timeout_s:g} s; switch the headband on and "
                            "check [lsl] (try `emotion-edge simulate-muse` to test the set-up)")
        time.sleep(0.1)
    total = len(order) * (block_s + rest_s)
    announce(f"Calibration: {len(order)} blocks of {block_s:g} s with {rest_s:g} s rests, about {total / 60:.1f} "
             "minutes. Sit still, keep your jaw relaxed and blink normally.")
    try:
        for i, label in enumerate(order, 1):
            announce(f"[{i}/{len(order)}] {INSTRUCTIONS.get(label, label)} ({block_s:g} s)")
            outlet.push_sample([f"{MARKER_PREFIX}{label}"])
            if stop.wait(block_s):
                raise EdgeError("calibration interrupted; nothing was installed")
            outlet.push_sample([MARKER_END])
            if rest_s and i < len(order):
                announce(f"rest ({rest_s:g} s)")
                if stop.wait(rest_s):
                    raise EdgeError("calibration interrupted; nothing was installed")
        announce("Done: thank you. Training the model...")
        time.sleep(1.0)  # lets the recorder pull the last marker
    finally:
        done.set()
        thread.join(30)
        del outlet
    if "error" in result:
        raise result["error"]
    return result["csv"]


def _ready(meta_path: Path) -> bool:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("samples")) and bool(meta.get("marker_stream"))


def report_lines(document: dict[str, Any]) -> list[str]:
    evaluation, training = document["evaluation"], document["training"]
    lines = [f"held-out accuracy {evaluation['accuracy']:.1%} over {evaluation['windows']} windows of "
             f"{document['window_s']:g} s (chance {evaluation['chance']:.1%}; {evaluation['folds']} folds, whole "
             f"blocks held out); blocks by majority vote {evaluation['block_accuracy']:.0%} of {evaluation['blocks']}",
             "per class: " + ", ".join(f"{label} {'-' if acc is None else format(acc, '.0%')}"
                                       for label, acc in evaluation["per_class_accuracy"].items()),
             f"windows per class {training['windows_per_class']}; "
             f"rejected for artefacts {training['rejected_windows']}",
             "confusion (rows true, columns predicted " + ", ".join(evaluation["confusion_matrix"]["labels"]) + "):"]
    lines += [f"  {label:>9} {row}" for label, row in zip(evaluation["confusion_matrix"]["labels"],
                                                        evaluation["confusion_matrix"]["counts"])]
    return lines


def calibrate_command(app, *, from_recording: str | None = None, out: str | None = None,
                      recording: str | None = None, classes: Sequence[str] = DEFAULT_CLASSES, repeats: int = 3,
                      block_s: float = 30.0, rest_s: float = 10.0, settings: CalibrationSettings | None = None,
                      force: bool = False, announce: Callable[[str], None] = print) -> int:
    """`emotion-edge calibrate`: record (or load) a session, train, evaluate and install; 0 when installed."""
    from edge.eeg.recorder import load_recording

    settings = (settings or CalibrationSettings()).validate()
    classes = [c.strip().lower() for c in classes if c.strip()]
    for label in classes:
        try:
            coordinates(label)
        except KeyError:
            raise EdgeError(f"calibration class {label!r} has no valence/arousal coordinate; use classes such as "
                            f"{', '.join(DEFAULT_CLASSES)}") from None
    target = Path(out).expanduser() if out else default_path(app.device.data_path)
    if from_recording:
        source = Path(from_recording)
    else:
        order = block_order(classes, repeats)
        stem = Path(recording) if recording else (
            app.device.data_path / "eeg" / time.strftime("calibration-%Y%m%d-%H%M%S"))
        source = guided_recording(stem, app, order, block_s, rest_s, announce)
        announce(f"recording kept at {source} (raw EEG; delete it when no longer needed)")
    document = calibrate_recording(load_recording(source), app.eeg, settings, classes, str(source))
    for line in report_lines(document):
        announce(line)
    if not installable(document, settings.min_margin) and not force:
        evaluation = document["evaluation"]
        raise EdgeError(f"held-out accuracy {evaluation['accuracy']:.1%} does not beat chance "
                        f"({evaluation['chance']:.1%}) by {settings.min_margin:.0%}: not installed, the runtime keeps "
                        "its current estimator; check the electrodes' contact and record again (or --force)")
    path = save_calibration(target, document)
    announce(f"installed {path} (the runtime uses it from its next start unless eeg.calibration = \"off\")")
    return 0
