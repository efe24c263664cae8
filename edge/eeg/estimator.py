"""Training-free valence/arousal INDEX from frontal EEG, plus the hook for a trained classifier.

This is an index, not a classifier: events carry model.estimator = "index" and label null.

Valence - frontal alpha asymmetry (FAA), Davidson's approach/withdrawal model (Davidson 1992,
Psychol. Sci. 3(1); review Coan & Allen 2004, Biol. Psychol. 67(1-2)). Alpha power is inversely
related to cortical activity, so FAA = ln(alpha AF8) - ln(alpha AF7) > 0 (more RIGHT alpha) means
relatively more LEFT frontal activity, associated with approach motivation / positive affect;
FAA < 0 with withdrawal / negative affect. Higher FAA -> higher valence index.

Arousal - ln(beta / alpha) over the frontal pair: beta rises and alpha falls with cortical
arousal (used as an arousal estimate with the Emotiv frontal channels by Ramirez & Vamvakousis
2012, "Detecting emotion from EEG signals using the Emotive Epoc device", Brain Informatics, LNCS 7670).

Both raw values differ a lot between people and electrode placements, so each is z-scored
against a rolling per-user baseline (the last eeg.baseline_s seconds of clean windows) and squashed
to [-1, 1] with tanh(z / eeg.squash_scale). Until eeg.warmup_s seconds of clean data are in the
baseline the index has no value yet (warming_up = True; the analyzer reports None). Values are raw per window: smoothing over time is the runtime's one smoother. The index therefore
says "more positive / more aroused than this user's recent state", not an absolute emotion.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge.affect import valence_arousal
from edge.eeg.config import EEGConfig
from edge.eeg.features import FeatureSet
from edge.errors import EdgeError

# A trained model plugged in later: feature vector -> class probabilities (mapping or sequence).
Classifier = Callable[[np.ndarray], "Mapping[str, float] | Sequence[float]"]


class RollingBaseline:
    """Mean and standard deviation of the last `capacity` values."""

    def __init__(self, capacity: int):
        self.values: deque[float] = deque(maxlen=max(1, capacity))

    def __len__(self) -> int:
        return len(self.values)

    def add(self, value: float) -> None:
        self.values.append(float(value))

    def zscore(self, value: float) -> float:
        if len(self.values) < 2:
            return 0.0
        data = np.fromiter(self.values, dtype=np.float64)
        std = float(data.std())
        return 0.0 if std < 1e-9 else (value - float(data.mean())) / std


@dataclass
class IndexResult:
    valence: float
    arousal: float
    warming_up: bool
    warmup_progress: float  # 0..1 of the clean data needed before the index is reported
    valence_z: float
    arousal_z: float


class IndexEstimator:
    """Valence from frontal alpha asymmetry, arousal from beta/alpha, against a per-user baseline."""

    def __init__(self, config: EEGConfig):
        self.config = config
        capacity = round(config.baseline_s / config.hop_s)
        self.warmup_windows = round(config.warmup_s / config.hop_s)
        self.asymmetry = RollingBaseline(capacity)
        self.ratio = RollingBaseline(capacity)
        self._last = IndexResult(0.0, 0.0, True, 0.0, 0.0, 0.0)

    def reset(self) -> None:
        """Forget the user (e.g. a different person put the headband on)."""
        self.__init__(self.config)

    def update(self, features: FeatureSet, accepted: bool) -> IndexResult:
        """Next index value; a rejected window leaves baseline and index unchanged."""
        if not accepted:
            return self._last
        warming = len(self.asymmetry) < self.warmup_windows
        z_val = self.asymmetry.zscore(features.alpha_asymmetry)
        z_aro = self.ratio.zscore(features.beta_alpha_log_ratio)
        self.asymmetry.add(features.alpha_asymmetry)
        self.ratio.add(features.beta_alpha_log_ratio)
        progress = min(1.0, len(self.asymmetry) / max(1, self.warmup_windows))
        if warming:
            self._last = IndexResult(0.0, 0.0, True, progress, z_val, z_aro)
            return self._last
        scale = self.config.squash_scale
        # Raw per window: the runtime's one smoother (edge.smoothing) averages over time.
        valence = math.tanh(z_val / scale)
        arousal = math.tanh(z_aro / scale)
        self._last = IndexResult(valence, arousal, False, 1.0, z_val, z_aro)
        return self._last


class ClassifierEstimator:
    """Wraps a trained model (features -> probabilities) so its output becomes event fields."""

    def __init__(self, predict: Classifier, labels: Sequence[str], feature_kind: str = "de"):
        if not labels:
            raise EdgeError("a classifier needs its class labels, e.g. [\"negative\", \"neutral\", \"positive\"]")
        self.predict, self.labels, self.feature_kind = predict, list(labels), feature_kind

    def classify(self, features: FeatureSet) -> tuple[str, float, dict[str, float], float, float]:
        """Returns (label, confidence, probabilities, valence, arousal)."""
        output = self.predict(features.vector(self.feature_kind))
        if isinstance(output, Mapping):
            probs = np.array([float(output.get(label, 0.0)) for label in self.labels])
        else:
            probs = np.asarray(output, dtype=np.float64).ravel()
        if probs.shape != (len(self.labels),) or not np.all(np.isfinite(probs)):
            raise EdgeError(f"EEG classifier returned {probs.shape} values, expected {len(self.labels)} finite "
                            "probabilities; check that the model matches eeg.classifier_features")
        total = float(probs.sum())
        probs = probs / total if total > 0 else np.full(len(self.labels), 1.0 / len(self.labels))
        best = int(np.argmax(probs))
        valence, arousal = valence_arousal(self.labels, probs)
        return (self.labels[best], float(probs[best]), dict(zip(self.labels, map(float, probs))),
                valence, arousal)
