"""Audio windows in, voice emotion events out.

Per window: refuse non-finite audio, resample to the model's 22050 Hz, judge voice activity and
signal health (silence and clipping are counted, not classified; DC is removed), compute the
181 features, run the model, smooth the probabilities over windows and publish an
`edge.events.Event` with modality "voice". Recoverable faults are counted in `health()` and the
window is skipped, so a long-running loop never dies on bad audio.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Sequence

import numpy as np

from ..affect import coordinates, valence_arousal
from ..backends.onnxrt import DEFAULT_PROVIDERS, check_providers
from ..errors import EdgeError
from ..events import Event, utc_timestamp
from .features import FEATURE_SIZE, MODEL_RATE, N_FFT, PAD_MODES, FeatureExtractor
from .logmel import LogMelConfig, log_mel
from .resample import check_rate, resample
from .vad import VadConfig, VoiceActivityDetector

log = logging.getLogger(__name__)

DEFAULT_LABELS = ("calm", "happy", "fearful", "disgust")


@dataclass
class VoiceConfig:
    SECTION: ClassVar[str] = "voice"
    # run the voice modality
    enabled: bool = False
    # where audio comes from: "microphone" ([microphone] table) or "file" ([audio_file] table)
    source: str = "microphone"
    # model directory written by `emotion-export voice`
    models: str = "models/voice"
    # voice artifact in `models` (any .tflite or .onnx the export wrote); fp16 because the pretrained model's
    # int8 artifacts agree with it on only about 90% of windows (docs/voice.md)
    model: str = "voice.fp16.tflite"
    # "auto" (by artifact format), "litert", "onnxruntime" or "tensorrt"
    backend: str = "auto"
    # inference threads
    threads: int = 1
    # ONNX Runtime execution providers in order of preference (onnxruntime backend only); see face.providers
    providers: tuple[str, ...] = DEFAULT_PROVIDERS

    # STFT centre padding: "constant" as librosa >= 0.10, "reflect" as librosa 0.8/0.9 did.
    pad_mode: str = "constant"
    # Estimate the tuning per window for chroma, as librosa.feature.chroma_stft does by default.
    estimate_tuning: bool = True
    # Weight of the newest window in the exponential moving average of probabilities (1 = none).
    smoothing_alpha: float = 0.5
    # Skip windows with clipped samples instead of classifying distorted audio.
    skip_clipped: bool = True
    # Resampler passband edge as a fraction of the lower Nyquist rate.
    resample_rolloff: float = 0.94

    def validate(self) -> None:
        if self.source not in ("microphone", "file"):
            raise EdgeError(f"voice.source = {self.source!r} must be \"microphone\" or \"file\"")
        if self.backend not in ("auto", "litert", "onnxruntime", "tensorrt"):
            raise EdgeError(f"voice.backend = {self.backend!r} must be auto, litert, onnxruntime or tensorrt")
        if not isinstance(self.threads, int) or not 1 <= self.threads <= 16:
            raise EdgeError(f"voice.threads = {self.threads!r} must be a whole number from 1 to 16")
        check_providers("voice.providers", self.providers)
        if self.pad_mode not in PAD_MODES:
            raise EdgeError(f"voice.pad_mode = {self.pad_mode!r} must be one of {', '.join(PAD_MODES)}")
        if not 0 < self.smoothing_alpha <= 1:
            raise EdgeError(f"voice.smoothing_alpha = {self.smoothing_alpha!r} must be in (0, 1]")
        if not 0.5 <= self.resample_rolloff < 1:
            raise EdgeError(f"voice.resample_rolloff = {self.resample_rolloff!r} must be in [0.5, 1)")


class Smoother(Protocol):
    """Per-stream probability smoothing a caller may plug in instead of the default EMA."""

    def update(self, probabilities: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class EmaSmoother:
    """Exponential moving average of probability vectors over consecutive speech windows.

    Voice windows are about a second apart, so a plain EMA is enough here; the runtime publishes an
    event when the smoothed label changes (faces use edge.smoothing, which adds a dwell time for
    per-frame scores)."""

    def __init__(self, alpha: float):
        self.alpha = float(alpha)
        self.state: np.ndarray | None = None

    def update(self, probabilities: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.state is None or self.state.shape != probabilities.shape:
            self.state = probabilities.copy()
        else:
            self.state = self.alpha * probabilities + (1 - self.alpha) * self.state
        return self.state

    def reset(self) -> None:
        self.state = None


def as_probabilities(output: np.ndarray) -> np.ndarray:
    """The model's output as probabilities: kept if it already is a distribution, else softmaxed."""
    values = np.asarray(output, dtype=np.float64).ravel()
    if np.all(values >= 0) and abs(values.sum() - 1.0) < 1e-3:
        return values / values.sum()
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


class VoicePipeline:
    """Turns AudioWindow objects (edge.sources.audio) into voice Events, counting what it skips."""

    def __init__(self, model, labels: Sequence[str] | None = None, config: VoiceConfig | None = None,
                 vad_config: VadConfig | None = None, device_id: str = "edge",
                 smoother: Smoother | None = None):
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
        self.device_id = device_id
        self.vad = VoiceActivityDetector(vad_config)
        self.features = FeatureExtractor(MODEL_RATE, self.config.pad_mode,
                                         None if self.config.estimate_tuning else 0.0)
        self.smoother: Smoother = smoother or EmaSmoother(self.config.smoothing_alpha)
        self._input_shape: tuple[int, ...] = (1, FEATURE_SIZE)
        self._model_info = {"id": "none", "sha256": "", "estimator": "classifier"}
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
            "windows", "classified", "silence", "clipping", "dc_offset", "no_speech", "nonfinite",
            "too_short", "model_errors")}
        self._timing = {"features_ms": 0.0, "inference_ms": 0.0}
        self._last: dict[str, Any] = {}

    def _check_model(self, model) -> None:
        shape = tuple(model.input_shape[1:])
        if self.logmel is not None:
            expected = log_mel(np.zeros(self.logmel.samples, np.float32), self.logmel).shape
            if shape != expected:
                raise EdgeError(f"voice model {model.manifest.model_id} takes input {shape}, but its manifest's "
                                f"log-mel frontend makes {expected}; re-export the model")
            self._input_shape = (1,) + shape
            self._model_info = {"id": model.manifest.model_id, "sha256": model.manifest.sha256,
                                "estimator": "classifier"}
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
        self._model_info = {"id": model.manifest.model_id, "sha256": model.manifest.sha256,
                            "estimator": "classifier"}

    @staticmethod
    def check_source_rate(rate: int) -> None:
        """Raise EdgeError now if windows at `rate` could not be brought to the model's rate."""
        check_rate(rate, MODEL_RATE, key="source rate")

    def reset(self) -> None:
        """Forget smoothing and the noise floor, e.g. when the source reconnects."""
        self.smoother.reset()
        self.vad.reset()

    def analyse(self, window) -> tuple[np.ndarray | None, Any, str | None]:
        """(features or None, VadResult or None, reason skipped or None) for one window."""
        self.counts["windows"] += 1
        samples = np.asarray(window.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise EdgeError(f"voice windows must be mono, got shape {samples.shape}; use edge.sources.audio")
        if not np.all(np.isfinite(samples)):
            return self._skip("nonfinite", None)
        if window.rate != MODEL_RATE:
            samples = resample(samples, window.rate, MODEL_RATE, self.config.resample_rolloff)
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
        centred = samples - np.float32(verdict.dc_offset)
        vector = log_mel(centred, self.logmel) if self.logmel is not None else self.features.extract(centred)
        self._timing["features_ms"] = (time.perf_counter() - started) * 1000
        return vector, verdict, None

    def _skip(self, counter: str | None, verdict, reason: str | None = None):
        if counter:
            self.counts[counter] += 1
        self._last = {"skipped": reason or counter, "vad": verdict.to_dict() if verdict else None}
        return None, verdict, reason or counter

    def process(self, window) -> Event | None:
        """One event for a window with enough speech, else None (the reason is counted in health()).

        Without a model the event still reports voice activity, with label None and no probabilities.
        """
        vector, verdict, reason = self.analyse(window)
        if vector is None:
            return None
        extra: dict[str, Any] = {"vad": verdict.to_dict(), "rate_in": window.rate,
                                 "window_s": round(window.duration, 3), "tuning": self.features.last_tuning}
        if self.model is None:
            label, confidence, probabilities, valence, arousal = None, 0.0, {}, 0.0, 0.0
        else:
            started = time.perf_counter()
            try:
                output = self.model.predict(vector.reshape(self._input_shape))
            except Exception as exc:  # a backend fault must not end the capture loop
                self.counts["model_errors"] += 1
                log.error("voice model failed on a window: %s", exc)
                return None
            self._timing["inference_ms"] = (time.perf_counter() - started) * 1000
            raw = as_probabilities(output[0])
            if raw.size != len(self.labels):
                self.counts["model_errors"] += 1
                log.error("voice model returned %d values for %d labels", raw.size, len(self.labels))
                return None
            smoothed = self.smoother.update(raw)
            best = int(np.argmax(smoothed))
            label, confidence = self.labels[best], float(smoothed[best])
            probabilities = {name: float(p) for name, p in zip(self.labels, smoothed)}
            valence, arousal = valence_arousal(self.labels, smoothed)
            extra["raw"] = {name: round(float(p), 4) for name, p in zip(self.labels, raw)}
        self.counts["classified"] += 1
        self._last = {"skipped": None, "vad": verdict.to_dict()}
        latency = max(0.0, (time.monotonic() - window.received) * 1000)
        return Event(
            device_id=self.device_id, modality="voice", kind="emotion", track_id=window.source,
            label=label, confidence=min(1.0, max(0.0, confidence)), probabilities=probabilities,
            valence=valence, arousal=arousal, timestamp=utc_timestamp(window.timestamp),
            model=dict(self._model_info), latency_ms=latency, extra=extra,
        )

    def health(self) -> dict[str, Any]:
        """Counters of windows seen, classified and skipped by reason, plus the latest levels."""
        return {**self.counts, **{k: round(v, 2) for k, v in self._timing.items()},
                "noise_floor_dbfs": None if self.vad.noise_floor_db is None else round(self.vad.noise_floor_db, 1),
                "last": dict(self._last)}
