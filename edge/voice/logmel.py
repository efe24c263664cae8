"""Log-mel spectrogram frontend for trainable voice models, in numpy alone.

A fixed-length window becomes a (n_mels, frames) image: centred Hann STFT power, Slaney mel
filterbank, decibels, then shifted so the loudest bin is 0 dB, floored at -top_db and scaled to
[0, 1]. Referencing the window's own maximum makes the input independent of microphone gain.
STFT, filterbank and dB helpers are those of `edge.voice.features`, so both frontends share one
implementation of the librosa conventions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import EdgeError
from .features import MODEL_RATE, apply_mel, magnitude_stft, power_to_db


@dataclass
class LogMelConfig:
    """Parameters of the log-mel input; the exported manifest records them and the device must match."""

    SECTION: ClassVar[str] = "voice_logmel"

    # Sample rate the spectrogram is computed at (audio is resampled to it first).
    rate: int = MODEL_RATE
    # FFT length in samples.
    n_fft: int = 1024
    # Samples between frames.
    hop: int = 256
    # Number of mel bands (Slaney scale, 0 Hz to rate / 2).
    n_mels: int = 64
    # Window length in seconds; shorter audio is zero-padded at the end, longer audio is cut.
    window_s: float = 2.5
    # Dynamic range kept below the window's loudest bin, in dB.
    top_db: float = 80.0

    def validate(self) -> None:
        s = self.SECTION
        if not 8000 <= self.rate <= 48000:
            raise EdgeError(f"{s}.rate = {self.rate!r} must be between 8000 and 48000 Hz")
        if self.n_fft < 64 or self.n_fft & (self.n_fft - 1):
            raise EdgeError(f"{s}.n_fft = {self.n_fft!r} must be a power of two of at least 64")
        if not 0 < self.hop <= self.n_fft:
            raise EdgeError(f"{s}.hop = {self.hop!r} must be in (0, n_fft]")
        if not 8 <= self.n_mels <= self.n_fft // 2:
            raise EdgeError(f"{s}.n_mels = {self.n_mels!r} must be between 8 and n_fft / 2")
        if not 0.25 <= self.window_s <= 30:
            raise EdgeError(f"{s}.window_s = {self.window_s!r} must be between 0.25 and 30 seconds")
        if not 10 <= self.top_db <= 120:
            raise EdgeError(f"{s}.top_db = {self.top_db!r} must be between 10 and 120 dB")

    @property
    def samples(self) -> int:
        return int(round(self.window_s * self.rate))

    @property
    def frames(self) -> int:
        return 1 + self.samples // self.hop

    @property
    def shape(self) -> tuple[int, int, int]:
        """Model input without the batch dimension: (mel bands, frames, 1 channel)."""
        return self.n_mels, self.frames, 1

    def to_manifest(self) -> dict[str, Any]:
        """What a manifest's preprocessing says, so the device can rebuild the config."""
        return {"frontend": "logmel", "computed_by": "edge.voice.logmel.log_mel", **asdict(self),
                "window": "hann (periodic), centred frames, zero padding", "mel": "slaney scale and norm",
                "scaling": "(dB - max dB) / top_db + 1, floored at 0", "layout": "(n_mels, frames, 1)"}

    @classmethod
    def from_manifest(cls, preprocessing: dict[str, Any]) -> "LogMelConfig":
        if preprocessing.get("frontend") != "logmel":
            raise EdgeError("this model's manifest does not describe a log-mel frontend")
        names = ("rate", "n_fft", "hop", "n_mels", "window_s", "top_db")
        config = cls(**{k: preprocessing[k] for k in names if k in preprocessing})
        config.validate()
        return config


def fit_length(y: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad at the end to exactly `length` samples."""
    if len(y) >= length:
        return y[:length]
    return np.concatenate([y, np.zeros(length - len(y), dtype=y.dtype)])


def log_mel(y: np.ndarray, config: LogMelConfig | None = None) -> np.ndarray:
    """float32 (n_mels, frames, 1) in [0, 1] for one mono window at `config.rate`."""
    config = config or LogMelConfig()
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or y.size == 0:
        raise EdgeError(f"log-mel needs a non-empty mono signal, got shape {y.shape}")
    power = magnitude_stft(fit_length(y, config.samples), config.n_fft, config.hop, "constant") ** 2
    db = power_to_db(apply_mel(power, config.rate, config.n_fft, config.n_mels), top_db=config.top_db)
    scaled = np.maximum((db - db.max()) / config.top_db + 1.0, 0.0)
    return scaled.astype(np.float32)[..., None]
