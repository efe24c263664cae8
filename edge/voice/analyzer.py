"""Audio windows in, one raw voice observation of the room per window (the edge.analyzer contract).

Per window: refuse non-finite audio, resample to the model's 22050 Hz (soxr), judge voice activity
and signal health (silence and clipping are counted, not classified; DC is removed), then
- the emotion model on the 181 features (or a trained model's log-mel image): its probabilities are
  always reported, but its label only when the top probability is above `voice.label_threshold`,
  else label None ("uncertain"); the default 4-class model has no neutral class and is certain of
  some emotion on plain speech, so its calibrated threshold is 1.0 and it never labels
  (docs/voice.md, benchmarks/voice_calibration.py). Valence comes from the model's probabilities
  (edge.affect) only when the label is shown, else None;
- prosodic arousal (edge.voice.prosody): energy, pitch and speaking rate against a rolling
  baseline of this stream's speech; None while the baseline is still short.

A window without speech (silence, clipping, too little speech, non-finite or too short audio) gives
one observation with label, valence, arousal, confidence and quality None and extra["skipped"] set to
the reason, so consumers see "the room is quiet" as no data, at every window, never as neutral.
No smoothing here: the runtime's one smoother averages observations per (modality, subject). Model
faults are not caught: the worker's fault policy decides what an inference error does.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from ..affect import coordinates, valence_arousal
from ..errors import EdgeError
from ..observation import Observation, rounded
from .config import VoiceConfig
from .features import FEATURE_SIZE, MODEL_RATE, N_FFT, FeatureExtractor
from .logmel import LogMelConfig, log_mel
from .prosody import ProsodyBaseline, ProsodyConfig, measure
from .resample import check_rate, resample
from .vad import VadConfig, VadResult, VoiceActivityDetector

DEFAULT_LABELS = ("calm", "happy", "fearful", "disgust")
SUBJECT = "room"
# Quality: signal-to-noise (window level over the adaptive noise floor) from 6 dB (0) to 30 dB (1),
# times the share of speech frames up to 60 % (1), times the share of samples not clipped.
SNR_RANGE_DB = (6.0, 30.0)
FULL_SPEECH_FRACTION = 0.6


def as_probabilities(output: np.ndarray) -> np.ndarray:
    """The model's output as probabilities: kept if it already is a distribution, else softmaxed."""
    values = np.asarray(output, dtype=np.float64).ravel()
    if np.all(values >= 0) and abs(values.sum() - 1.0) < 1e-3:
        return values / values.sum()
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def window_quality(verdict: VadResult, max_clipped_fraction: float) -> float:
    """[0, 1] from the window's SNR, its share of speech frames and its clipped samples."""
    low, high = SNR_RANGE_DB
    snr = verdict.level_dbfs - verdict.noise_floor_dbfs
    q_snr = min(1.0, max(0.0, (snr - low) / (high - low)))
    q_speech = min(1.0, verdict.speech_fraction / FULL_SPEECH_FRACTION)
    q_clip = 1.0 - min(1.0, verdict.clipped_fraction / max(max_clipped_fraction, 1e-9)) \
        if verdict.clipped_fraction > 0 else 1.0
    return q_snr * q_speech * q_clip


class VoiceAnalyzer:
    """Turns AudioWindow objects (edge.sources.audio) into one Observation of the room each."""

    modality = "voice"

    def __init__(self, model, labels: Sequence[str] | None = None, config: VoiceConfig | None = None,
                 vad_config: VadConfig | None = None):
        self.config = config or VoiceConfig()
        self.config.validate()
        self.model = model
        self.labels = list(labels) if labels is not None else (
            list(model.manifest.labels) if model is not None else list(DEFAULT_LABELS))
        for label in self.labels:
            try:
                coordinates(label)
            except KeyError as exc:
                raise EdgeError(str(exc.args[0])) from None
        self.vad = VoiceActivityDetector(vad_config)
        self.features = FeatureExtractor(MODEL_RATE, self.config.pad_mode,
                                         None if self.config.estimate_tuning else 0.0)
        self.prosody = ProsodyBaseline(ProsodyConfig(baseline_s=self.config.prosody_baseline_s,
                                                     warmup_windows=self.config.prosody_warmup_windows,
                                                     scale=self.config.prosody_scale))
        self._input_shape: tuple[int, ...] = (1, FEATURE_SIZE)
        self._model_info = {"id": "none", "sha256": ""}
        # Models trained with `emotion-export train-voice` read a log-mel image instead of the 181 means.
        self.logmel: LogMelConfig | None = None
        if model is not None and model.manifest.preprocessing.get("frontend") == "logmel":
            self.logmel = LogMelConfig.from_manifest(model.manifest.preprocessing)
            if self.logmel.rate != MODEL_RATE:
                raise EdgeError(f"voice model {model.manifest.model_id} wants log-mel at {self.logmel.rate} Hz; "
                                f"the device pipeline resamples to {MODEL_RATE} Hz")
        if model is not None:
            self._check_model(model)
        self.counts = {key: 0 for key in (
            "windows", "classified", "labelled", "uncertain", "silence", "clipping", "dc_offset", "no_speech",
            "nonfinite", "too_short")}
        self._timing = {"features_ms": 0.0, "inference_ms": 0.0, "prosody_ms": 0.0}
        self._last: dict[str, Any] = {}
        self._last_timestamp: float | None = None
        self._samples: np.ndarray | None = None

    def _check_model(self, model) -> None:
        shape = tuple(model.input_shape[1:])
        self._model_info = {"id": model.manifest.model_id, "sha256": model.manifest.sha256}
        if self.logmel is not None:
            expected = log_mel(np.zeros(self.logmel.samples, np.float32), self.logmel).shape
            if shape != expected:
                raise EdgeError(f"voice model {model.manifest.model_id} takes input {shape}, but its manifest's "
                                f"log-mel frontend makes {expected}; re-export the model")
            self._input_shape = (1,) + shape
            return
        size = int(np.prod([d for d in shape if isinstance(d, int) and d > 0])) if shape else 0
        if size != FEATURE_SIZE or any(not isinstance(d, int) or d <= 0 for d in shape):
            raise EdgeError(f"voice model {model.manifest.model_id} takes input {shape}, but the voice features "
                            f"are {FEATURE_SIZE} values; export a model with a (N, {FEATURE_SIZE}[, 1]) input")
        self._input_shape = (1,) + shape
        outputs = model.manifest.outputs
        if outputs and outputs[0].shape and isinstance(outputs[0].shape[-1], int) and outputs[0].shape[-1] > 0:
            if outputs[0].shape[-1] != len(self.labels):
                raise EdgeError(f"voice model {model.manifest.model_id} has {outputs[0].shape[-1]} outputs but "
                                f"{len(self.labels)} labels {self.labels}; fix the manifest labels")

    @staticmethod
    def check_source_rate(rate: int) -> None:
        """Raise EdgeError now if windows at `rate` could not be brought to the model's rate."""
        check_rate(rate, MODEL_RATE, key="source rate")

    def reset(self) -> None:
        """Forget the noise floor and the prosodic baseline: the next window starts a new stream."""
        self.vad.reset()
        self.prosody.reset()

    def _skip(self, counter: str | None, verdict: VadResult | None, reason: str | None = None):
        if counter:
            self.counts[counter] += 1
        self._last = {"skipped": reason or counter, "vad": verdict.to_dict() if verdict else None}
        return None, verdict, reason or counter

    def analyse(self, window) -> tuple[np.ndarray | None, VadResult | None, str | None]:
        """(model input or None, VadResult or None, reason skipped or None) for one window."""
        self.counts["windows"] += 1
        self._samples = None
        samples = np.asarray(window.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise EdgeError(f"voice windows must be mono, got shape {samples.shape}; use edge.sources.audio")
        if not np.all(np.isfinite(samples)):
            return self._skip("nonfinite", None)
        if window.rate != MODEL_RATE:
            samples = resample(samples, window.rate, MODEL_RATE)
        if len(samples) < N_FFT:
            return self._skip("too_short", None)
        verdict = self.vad.analyse(samples, MODEL_RATE, end_time=window.timestamp + window.duration)
        for problem in verdict.problems:
            self.counts[problem] += 1
        if "silence" in verdict.problems:
            return self._skip(None, verdict, "silence")
        if "clipping" in verdict.problems and self.config.skip_clipped:
            return self._skip(None, verdict, "clipping")
        if verdict.speech_fraction < self.vad.config.min_speech_fraction:
            return self._skip("no_speech", verdict)
        started = time.perf_counter()
        self._samples = samples - np.float32(verdict.dc_offset)
        vector = log_mel(self._samples, self.logmel) if self.logmel is not None else \
            self.features.extract(self._samples)
        self._timing["features_ms"] = (time.perf_counter() - started) * 1000
        return vector, verdict, None

    def process(self, window) -> list[Observation]:
        """One observation of the room for this window (see the module docstring for skipped windows)."""
        timestamp = window.timestamp + window.duration  # the estimate describes the audio up to its last sample
        self._last_timestamp = timestamp
        vector, verdict, reason = self.analyse(window)
        base = {"window_start": window.timestamp, "window_s": round(window.duration, 3), "rate_in": window.rate}
        if vector is None:
            return [Observation(self.modality, SUBJECT, timestamp, estimator="prosody", model=dict(self._model_info),
                                latency_ms=self._latency(window), extra={
                                    **base, "skipped": reason, "vad": verdict.to_dict() if verdict else None})]
        probabilities = None
        label = valence = None
        top = None
        if self.model is not None:
            started = time.perf_counter()
            output = self.model.predict(vector.reshape(self._input_shape))
            self._timing["inference_ms"] = (time.perf_counter() - started) * 1000
            raw = as_probabilities(output[0])
            if raw.size != len(self.labels):
                raise EdgeError(f"voice model {self._model_info['id']} returned {raw.size} values for "
                                f"{len(self.labels)} labels {self.labels}; fix the manifest labels")
            best = int(np.argmax(raw))
            top = float(raw[best])
            probabilities = {name: float(p) for name, p in zip(self.labels, raw)}
            if top > self.config.label_threshold:
                label = self.labels[best]
                valence = valence_arousal(self.labels, raw)[0]
                self.counts["labelled"] += 1
            else:
                self.counts["uncertain"] += 1
        started = time.perf_counter()
        features = measure(self._samples, MODEL_RATE, verdict.frame_energy_db, verdict.active, verdict.frame_length)
        score = self.prosody.score(features, timestamp) if features is not None else None
        self._timing["prosody_ms"] = (time.perf_counter() - started) * 1000
        arousal = score["arousal"] if score else None
        quality = window_quality(verdict, self.vad.config.max_clipped_fraction)
        parts = []
        if valence is not None:  # how far above the threshold the model is, in [0, 1]
            span = 1.0 - self.config.label_threshold
            parts.append(min(1.0, (top - self.config.label_threshold) / span) if span > 0 else 1.0)
        if arousal is not None:
            parts.append(score["maturity"])
        confidence = quality * sum(parts) / len(parts) if parts else None
        estimator = "+".join(n for n, v in (("classifier", valence), ("prosody", arousal)) if v is not None) or (
            "classifier" if self.model is not None else "prosody")
        self.counts["classified"] += 1
        self._last = {"skipped": None, "vad": verdict.to_dict()}
        extra: dict[str, Any] = {**base, "vad": verdict.to_dict(), "tuning": self.features.last_tuning}
        if top is not None:
            extra.update(top_probability=round(top, 6), label_threshold=self.config.label_threshold,
                         uncertain=label is None)
        if features is not None:
            extra["prosody"] = {"energy_db": rounded(features.energy_db, 2), "pitch_st": rounded(features.pitch_st, 2),
                                "rate_hz": rounded(features.rate_hz, 2),
                                "voiced_fraction": round(features.voiced_fraction, 3),
                                "z": score["z"], "baseline_windows": score["baseline_windows"],
                                "warming_up": arousal is None}
        return [Observation(self.modality, SUBJECT, timestamp, label=label, probabilities=probabilities,
                            valence=valence, arousal=arousal, confidence=confidence, quality=quality,
                            estimator=estimator, model=dict(self._model_info), latency_ms=self._latency(window),
                            extra=extra)]

    @staticmethod
    def _latency(window) -> float | None:
        return max(0.0, (time.monotonic() - window.received) * 1000) if window.received else None

    def close(self) -> list[Observation]:
        """The input ended: an "end" observation of the room, if any window came since the last reset."""
        if self._last_timestamp is None:
            return []
        timestamp, self._last_timestamp = self._last_timestamp, None
        return [Observation(self.modality, SUBJECT, timestamp, kind="end", model=dict(self._model_info))]

    def health(self) -> dict[str, Any]:
        """Counters of windows seen, classified, labelled or uncertain and skipped by reason; the latest levels."""
        return {**self.counts, **{k: round(v, 2) for k, v in self._timing.items()},
                "noise_floor_dbfs": None if self.vad.noise_floor_db is None else round(self.vad.noise_floor_db, 1),
                "prosody_baseline_windows": len(self.prosody), "last": dict(self._last)}

    def models(self) -> dict[str, dict[str, Any]]:
        return {"voice.model": self.model.describe()} if self.model is not None else {}
