"""The one smoother shared by face, voice, EEG and fusion: steady labels from noisy per-frame scores.

Per stream (a face track, a microphone, a headband) an exponential moving average of the
probability vectors, then a label switch rule in the spirit of wake-word "patience": a new
label is adopted only once it leads the smoothed vector with at least `min_confidence` for
`dwell_s` seconds without interruption. The average is time-aware: `alpha` is the weight of
one update at `alpha_interval_s` spacing, and a longer gap (a dropped frame) weighs the new
vector more, so the time constant in seconds stays the same whatever the frame rate.

`ObservationSmoother` applies this per (modality, subject) to the analyzers' raw observations: the
probability vector (and its label rule), and valence, arousal, confidence and quality as scalars with the
same time-aware weight. A value that is None in a raw observation (no data in that window) is None in
the smoothed one too, and does not disturb the average kept for the next window with data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .errors import EdgeError
from .observation import Observation

log = logging.getLogger(__name__)


@dataclass
class SmoothingConfig:
    # weight of a new probability vector in the moving average, for updates alpha_interval_s apart
    # (1 = no smoothing)
    alpha: float = 0.3
    # update spacing in seconds that alpha is meant for; longer gaps weigh the new vector more.
    # 0 applies alpha per update whatever the timing
    alpha_interval_s: float = 0.1
    # smallest smoothed probability a label needs before it can be adopted
    min_confidence: float = 0.5
    # seconds a new label must stay the confident leader before the smoothed label switches to it
    dwell_s: float = 0.5

    def validate(self) -> None:
        checks = (
            ("alpha", lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
            ("alpha_interval_s", lambda v: v >= 0.0, "a number of seconds >= 0"),
            ("min_confidence", lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
            ("dwell_s", lambda v: v >= 0.0, "a number of seconds >= 0"),
        )
        for key, ok, wanted in checks:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not ok(value):
                raise EdgeError(f"smoothing.{key} must be {wanted}, not {value!r}")


def ema_weight(cfg: SmoothingConfig, dt: float | None) -> float:
    """Weight of a new value after a gap of `dt` seconds: the same time constant whatever the update rate."""
    if dt is None or cfg.alpha_interval_s == 0 or cfg.alpha >= 1.0:
        return cfg.alpha
    return 1.0 - (1.0 - cfg.alpha) ** (max(dt, 0.0) / cfg.alpha_interval_s)


class Smoother:
    """Smoothing state of one stream."""

    def __init__(self, labels: Sequence[str], config: SmoothingConfig | None = None, release: bool = False):
        """`release`: without a confident leader for `dwell_s` the label goes back to None ("uncertain");
        otherwise the last adopted label is kept until another one leads."""
        self.config = config or SmoothingConfig()
        self.config.validate()
        self.release = release
        self.labels = tuple(labels)
        if not self.labels:
            raise EdgeError("smoothing needs the model's class labels; the manifest lists none")
        self.probs: np.ndarray | None = None
        self.label: str | None = None
        self._last_t: float | None = None
        self._pending: str | None = None
        self._pending_since = 0.0

    def weight(self, dt: float | None) -> float:
        """Weight of the new vector after a gap of `dt` seconds."""
        return ema_weight(self.config, dt)

    def update(self, probs: Sequence[float], t: float, confident: bool = True) -> tuple[np.ndarray, str | None, bool]:
        """Fold in one probability vector captured at time `t` (seconds); `confident` False says the analyzer
        would not name a label for this input (below its calibrated threshold), so no label leads.

        Returns the smoothed vector, the current label (None until one is adopted) and whether
        the label changed with this update. A vector with NaN/inf is skipped with a warning.
        """
        vector = np.asarray(probs, dtype=np.float64).reshape(-1)
        if vector.shape[0] != len(self.labels):
            raise EdgeError(f"the model gave {vector.shape[0]} scores but its manifest lists {len(self.labels)} "
                            f"labels; re-export the model or fix the manifest's labels")
        if not np.all(np.isfinite(vector)):
            log.warning("skipping a prediction with non-finite scores")
            return self._current(), self.label, False
        t = float(t)
        if self.probs is None:
            self.probs = vector.copy()
        else:
            dt = t - self._last_t if self._last_t is not None else None
            w = self.weight(dt)
            self.probs = (1.0 - w) * self.probs + w * vector
        self._last_t = t if self._last_t is None else max(t, self._last_t)

        best = int(np.argmax(self.probs))
        leader = self.labels[best] if confident and self.probs[best] >= self.config.min_confidence else None
        changed = False
        if leader is None and self.release and self.label is not None:
            if self._pending != "":
                self._pending, self._pending_since = "", t
            if t - self._pending_since >= self.config.dwell_s - 1e-9:
                self.label, self._pending = None, None
                changed = True
        elif leader is None or leader == self.label:
            self._pending = None
        else:
            if leader != self._pending:
                self._pending, self._pending_since = leader, t
            if t - self._pending_since >= self.config.dwell_s - 1e-9:  # float timestamps
                self.label, self._pending = leader, None
                changed = True
        return self._current(), self.label, changed

    @property
    def confidence(self) -> float:
        """Smoothed probability of the current label (0 before one is adopted)."""
        if self.probs is None or self.label is None:
            return 0.0
        return float(self.probs[self.labels.index(self.label)])

    def as_dict(self) -> dict[str, float]:
        """The smoothed vector keyed by label, as the event schema's `probabilities`."""
        current = self._current()
        return {label: float(p) for label, p in zip(self.labels, current)}

    def _current(self) -> np.ndarray:
        return np.zeros(len(self.labels)) if self.probs is None else self.probs.copy()


class ObservationSmoother:
    """One smoothing state per (modality, subject); a subject's "end" observation forgets it.

    `configs` maps a modality to its SmoothingConfig and whether its label is released to None without a
    confident leader (voice: a 4-class model with no neutral must be able to say "uncertain")."""

    def __init__(self, configs: dict[str, tuple[SmoothingConfig, bool]]):
        self.configs = configs
        self._streams: dict[tuple[str, str], _Stream] = {}

    def update(self, observation: Observation) -> tuple[Observation, bool]:
        """The smoothed observation and whether its label changed with it."""
        key = (observation.modality, observation.subject)
        if observation.kind == "end":
            self._streams.pop(key, None)
            return observation, False
        if observation.kind == "start":
            return observation, False
        stream = self._streams.get(key)
        if stream is None:
            config, release = self.configs.get(observation.modality, (SmoothingConfig(), False))
            stream = self._streams[key] = _Stream(config, release)
        return stream.update(observation)

    def forget(self, modality: str) -> None:
        """The modality's input restarted: its streams start over."""
        for key in [key for key in self._streams if key[0] == modality]:
            del self._streams[key]

    def __len__(self) -> int:
        return len(self._streams)


class _Stream:
    SCALARS = ("valence", "arousal", "confidence", "quality")

    def __init__(self, config: SmoothingConfig, release: bool):
        self.config, self.release = config, release
        self.labels: Smoother | None = None
        self.values: dict[str, float] = {}
        self.times: dict[str, float] = {}
        self.label: str | None = None  # of an estimator without classes: its label passes through

    def update(self, raw: Observation) -> tuple[Observation, bool]:
        t = raw.timestamp
        changes: dict = {}
        changed = False
        if raw.probabilities:
            names = tuple(raw.probabilities)
            if self.labels is None or self.labels.labels != names:
                self.labels = Smoother(names, self.config, self.release)
            confident = raw.label is not None or not self.release
            probs, label, changed = self.labels.update([raw.probabilities[name] for name in names], t, confident)
            changes["probabilities"] = {name: float(p) for name, p in zip(names, probs)}
            changes["label"] = label
        else:
            changed, self.label = raw.label != self.label, raw.label
        for name in self.SCALARS:
            value = getattr(raw, name)
            if value is None:
                continue
            last = self.values.get(name)
            if last is None:
                smoothed = float(value)
            else:
                weight = ema_weight(self.config, t - self.times[name])
                smoothed = (1.0 - weight) * last + weight * float(value)
            self.values[name], self.times[name] = smoothed, max(t, self.times.get(name, t))
            changes[name] = smoothed
        if raw.probabilities and changes["label"] is not None and raw.confidence is not None:
            changes["confidence"] = changes["probabilities"][changes["label"]]  # the smoothed probability of what it says
        return replace(raw, **changes), changed
