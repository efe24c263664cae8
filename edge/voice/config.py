"""The [voice] settings, importable without loading the analyzer or a model runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..backends import check_backend
from ..backends.onnxrt import DEFAULT_PROVIDERS, check_providers
from ..errors import EdgeError
from .features import PAD_MODES


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
    # Weight of the newest window in the shared smoother's moving average of voice observations (1 = none);
    # one window per microphone.hop_s / audio_file.hop_s seconds.
    smoothing_alpha: float = 0.5
    # Skip windows with clipped samples instead of classifying distorted audio.
    skip_clipped: bool = True
    # The model's label is shown only when its top probability is above this, else label is null
    # ("uncertain") and valence null; probabilities are always published. 1.0 = never: calibrated on
    # neutral espeak-ng speech, where the default 4-class model (no neutral class) gives a top probability
    # of 1.0 to most windows (docs/voice.md). Lower it only for a model calibrated to a neutral outcome.
    label_threshold: float = 1.0
    # Seconds of past speech windows that form a speaker's prosodic baseline (energy, pitch, rate).
    prosody_baseline_s: float = 300.0
    # Speech windows in the baseline before prosodic arousal is published (null until then).
    prosody_warmup_windows: int = 8
    # Arousal = tanh(weighted mean z-score of energy, pitch and rate / this): larger = gentler.
    prosody_scale: float = 1.5

    def validate(self) -> None:
        if self.source not in ("microphone", "file"):
            raise EdgeError(f"voice.source = {self.source!r} must be \"microphone\" or \"file\"")
        check_backend("voice.backend", self.backend)
        if not isinstance(self.threads, int) or not 1 <= self.threads <= 16:
            raise EdgeError(f"voice.threads = {self.threads!r} must be a whole number from 1 to 16")
        check_providers("voice.providers", self.providers)
        if self.pad_mode not in PAD_MODES:
            raise EdgeError(f"voice.pad_mode = {self.pad_mode!r} must be one of {', '.join(PAD_MODES)}")
        if not 0 < self.smoothing_alpha <= 1:
            raise EdgeError(f"voice.smoothing_alpha = {self.smoothing_alpha!r} must be in (0, 1]")
        if not 0 <= self.label_threshold <= 1:
            raise EdgeError(f"voice.label_threshold = {self.label_threshold!r} must be in [0, 1] (1 = never label)")
        if not 10 <= self.prosody_baseline_s <= 86400:
            raise EdgeError(f"voice.prosody_baseline_s = {self.prosody_baseline_s!r} must be 10 to 86400 seconds")
        if not isinstance(self.prosody_warmup_windows, int) or not 2 <= self.prosody_warmup_windows <= 1000:
            raise EdgeError(f"voice.prosody_warmup_windows = {self.prosody_warmup_windows!r} must be a whole "
                            "number from 2 to 1000")
        if not 0.1 <= self.prosody_scale <= 10:
            raise EdgeError(f"voice.prosody_scale = {self.prosody_scale!r} must be between 0.1 and 10")
