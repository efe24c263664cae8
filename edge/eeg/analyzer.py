"""The EEG analyzer (edge.analyzer protocol): LSL chunks in, one raw observation of the wearer per window out.

The analysis chain is `EEGPipeline`'s (filters, sliding windows, artefact rejection, band features); what
this adds is the estimator and the "no data is None" rule. Three estimators, in this order:
- "classifier": `eeg.model`, a model trained with `emotion-export train-eeg`; confidence = top probability;
- "calibrated": the wearer's own model from `emotion-edge calibrate` (`eeg.calibration`, by default
  `<device.data_dir>/eeg/calibration.json` when it exists). The live windows are the calibration's
  (1 s, every `eeg.hop_s`), so the model sees the features it was trained on. Confidence = top probability
  x the calibration's skill, (held-out accuracy - chance) / (1 - chance): a model that barely beat chance
  in calibration is not trusted much however peaked its probabilities;
- "index": the training-free frontal index (`estimator.IndexEstimator`) when neither exists. It says
  "relative to this wearer's recent past", was not shown to separate positive from negative on real EEG,
  so it carries a fixed low confidence (`INDEX_CONFIDENCE`), no label, and extra["uncalibrated"] = True.
No smoothing and no "emit on change" here: the worker applies the runtime's one smoother and event policy.
A rejected window (blink, jaw clench, bad contact) and the index's warm-up give valence, arousal and
confidence None, with extra["rejected"] = the reason or extra["warming_up"] = the fraction done.
quality is the mean per-electrode signal-quality score (edge.eeg.quality), in [0, 1]; each electrode's
score is in extra["electrodes"].
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.eeg.calibration import Calibration, load_calibration, resolve_calibration, window_config
from edge.eeg.config import EEGConfig
from edge.eeg.estimator import IndexEstimator
from edge.eeg.pipeline import EEGPipeline, WindowResult
from edge.errors import EdgeError
from edge.observation import Observation

SUBJECT = "wearer"
# Confidence of the uncalibrated index: low, so fusion weighs it below any calibrated estimate.
INDEX_CONFIDENCE = 0.2
INDEX_MODEL_ID = "eeg-frontal-index"
# LSL clocks count seconds since boot; Unix times of this century are above this.
_UNIX_AFTER = 1e9


class EEGAnalyzer:
    """One EEG stream (one wearer): `process(chunk)` -> one Observation per completed window."""

    modality = "eeg"

    def __init__(self, config: EEGConfig, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                 *, source=None, labels: Sequence[str] | None = None, rate: float | None = None,
                 to_unix: Callable[[float], float] | None = None):
        """`source` (an LSLSource) gives the stream's labels and rate at each new stream and converts its clock;
        without one, pass `labels` and `rate` (and `to_unix` when the chunks carry LSL times)."""
        self.config = config.validate()
        self.source = source
        self._to_unix = to_unix
        self.calibration: Calibration | None = None
        self.classifier = None
        self.model_id, self.sha256 = INDEX_MODEL_ID, ""
        chain_config = self.config
        calibration_path = resolve_calibration(self.config, data_dir)
        if self.config.model:
            from edge.eeg.classifier import load_eeg_classifier

            self.classifier = load_eeg_classifier(Path(self.config.model).expanduser(), self.config.backend,
                                                  providers=self.config.providers, cache_dir=cache_dir)
            self.classifier.check_config(self.config)  # channels, window and filters it was trained with
            self.estimator, self.model_id, self.sha256 = "classifier", self.classifier.model_id, self.classifier.sha256
        elif calibration_path is not None:
            self.calibration = load_calibration(calibration_path)
            self.calibration.check(self.config)
            chain_config = replace(window_config(self.config, self.calibration.window_s),
                                   welch_segment_s=self.calibration.welch_segment_s).validate()
            self.estimator, self.model_id = "calibrated", self.calibration.model_id
            self.sha256 = self.calibration.sha256
        else:
            self.estimator = "index"
        self.window_s = chain_config.window_s
        self._chain = EEGPipeline(chain_config)
        self.index = IndexEstimator(self.config)
        self._stream_set = False
        self._open = False
        self._last: WindowResult | None = None
        self._last_capture: float | None = None
        self._last_latency_ms: float | None = None
        # Fraction of the index's warm-up done, None when there is none to wait for.
        self._warmup: float | None = 0.0 if self.estimator == "index" else None
        self._recent_rejects: deque[bool] = deque(maxlen=120)
        self._cpu_s = 0.0
        self._observations = 0
        if labels is not None:
            self.set_stream(labels, rate or 0.0)

    @classmethod
    def from_config(cls, app, source=None) -> EEGAnalyzer:
        """From the AppConfig: [eeg], the device's data directory (calibration) and cache directory (engines)."""
        return cls(app.eeg, app.device.data_path, app.device.cache_path, source=source)

    # -- the Analyzer protocol -----------------------------------------------------------------------
    def set_stream(self, labels: Sequence[str], rate: float) -> None:
        """Map eeg.channels onto a (new) stream's columns; EdgeError when it cannot feed the estimator."""
        if self.calibration is not None and rate > 0:
            self.calibration.check_stream(rate)
        self._chain.set_stream(labels, rate)
        self._stream_set = True

    def process(self, chunk) -> list[Observation]:
        """Observations for the windows this chunk completes (none until the first window is full)."""
        started, cpu = time.perf_counter(), time.thread_time()
        if chunk.new_stream or not self._stream_set:
            description = getattr(chunk, "description", None) or getattr(self.source, "description", None)
            if description is not None:
                self.set_stream(description.labels, description.nominal_rate)
            elif not self._stream_set:
                raise EdgeError("the EEG analyzer needs the stream's channel labels and rate: give it the LSL "
                                "source, or labels and rate")
        observations = [self._observe(result, started) for result in self._chain.analyse_chunk(chunk)]
        self._cpu_s += time.thread_time() - cpu
        return observations

    def reset(self) -> None:
        """Restart filters and windows (the stream restarted); the wearer's index baseline is kept."""
        self._chain.reset_stream()

    def forget_wearer(self) -> None:
        """A different person put the headband on: drop the index baseline (the calibration stays)."""
        self.index.reset()
        if self.estimator == "index":
            self._warmup = 0.0

    def close(self) -> list[Observation]:
        if not self._open:
            return []
        self._open = False
        return [Observation(self.modality, SUBJECT, self._last_capture or time.time(), kind="end",
                            estimator=self.estimator, model={"id": self.model_id, "sha256": self.sha256})]

    def health(self) -> dict[str, Any]:
        counts = self._chain._counts
        last = self._last
        recent = list(self._recent_rejects)
        return {
            "windows": counts["windows"],
            "rejected": counts["rejected"],
            "resets": counts["resets"],
            "rejected_recent_fraction": round(sum(recent) / len(recent), 3) if recent else None,
            "electrodes": ({n: q.to_dict() for n, q in last.assessment.channels.items()} if last else None),
            "last_reason": last.assessment.reason if last else None,
            "estimator": self.estimator,
            "window_s": self.window_s,
            # the index's baseline: None when the estimator has none (calibrated, classifier)
            "warming_up": (self._warmup is not None) if self.estimator == "index" else None,
            "warmup_progress": self._warmup,
            "calibration": ({"accuracy": self.calibration.accuracy, "chance": self.calibration.chance}
                            if self.calibration is not None else None),
            "last_latency_ms": round(self._last_latency_ms, 2) if self._last_latency_ms is not None else None,
            "cpu_ms_per_window": (round(1000 * self._cpu_s / self._observations, 3) if self._observations else None),
        }

    def models(self) -> dict[str, dict[str, Any]]:
        if self.classifier is not None:
            return {"eeg.model": self.classifier.model.describe()}
        if self.calibration is not None:
            return {"eeg.calibration": self.calibration.describe()}
        return {}

    # -- one window ------------------------------------------------------------------------------------
    def _observe(self, result: WindowResult, started: float) -> Observation:
        a, features = result.assessment, result.features
        scores = {name: q.score for name, q in a.channels.items()}
        extra: dict[str, Any] = {
            "electrodes": {name: round(score, 3) for name, score in scores.items()},
            "electrode_status": {name: q.status for name, q in a.channels.items()},
            "asymmetry": round(features.alpha_asymmetry, 4),
            "beta_alpha_log_ratio": round(features.beta_alpha_log_ratio, 4),
            "band_power_uv2": features.band_summary(),
            "window_s": self.window_s,
        }
        label = probabilities = valence = arousal = confidence = None
        self._recent_rejects.append(a.rejected)
        if self.estimator == "index":
            extra["uncalibrated"] = True
        if a.rejected:
            extra["rejected"], extra["reasons"] = a.reason, list(a.reasons)
            if self.estimator == "index" and self._warmup is not None:
                extra["warming_up"] = self._warmup
        elif self.estimator == "index":
            index = self.index.update(features, accepted=True)
            extra["index_z"] = {"valence": round(index.valence_z, 3), "arousal": round(index.arousal_z, 3)}
            if index.warming_up:
                self._warmup = round(index.warmup_progress, 3)
                extra["warming_up"] = self._warmup
            else:
                self._warmup = None
                valence, arousal, confidence = index.valence, index.arousal, INDEX_CONFIDENCE
        elif self.estimator == "calibrated":
            label, probabilities, valence, arousal = self.calibration.classify(features)
            confidence = max(probabilities.values()) * self.calibration.skill
        else:
            label, confidence, probabilities, valence, arousal = self.classifier.classify(features)
        capture = self._unix(float(result.times[-1]))
        latency = time.time() - capture
        if not 0.0 <= latency < 5.0:
            # Capture times not comparable with our clock (a sped-up replay, a skewed sender): processing only.
            latency = time.perf_counter() - started
        self._last, self._last_capture, self._last_latency_ms = result, capture, latency * 1000.0
        self._observations += 1
        self._open = True
        return Observation(
            self.modality, SUBJECT, capture, label=label, probabilities=probabilities,
            valence=_clip(valence), arousal=_clip(arousal),
            confidence=None if confidence is None else float(np.clip(confidence, 0.0, 1.0)),
            quality=float(np.clip(np.mean(list(scores.values())), 0.0, 1.0)) if scores else None,
            estimator=self.estimator, model={"id": self.model_id, "sha256": self.sha256},
            latency_ms=round(self._last_latency_ms, 3), extra=extra)

    def _unix(self, t: float) -> float:
        if t >= _UNIX_AFTER:
            return t
        if self._to_unix is None:
            self._to_unix = getattr(self.source, "to_unix", None)
            if self._to_unix is None:
                from edge.sources.lsl import to_unix

                self._to_unix = to_unix
        return float(self._to_unix(t))


def _clip(value: float | None) -> float | None:
    return None if value is None else float(np.clip(value, -1.0, 1.0))
