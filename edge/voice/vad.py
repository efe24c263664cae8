"""Lean voice activity detection and signal-health checks for one audio window.

A window is worth classifying only if someone is speaking in enough of it. Per 20 ms frame the
detector compares the frame energy with an adaptive noise floor (it falls at once to a quieter
window's 10th-percentile frame energy and rises by `floor_rise_db_per_s` otherwise, so stationary
hum or fan noise is learnt) and requires a non-flat spectrum (spectral flatness below
`max_flatness`: white-ish noise is flat, voiced speech is not) and a zero-crossing rate in the
speech range. Speech frames are extended by a hangover so the unvoiced ends of words count.

Silence, clipping and DC offset are detected per window and reported by name; the pipeline
counts them instead of classifying silence or clipped audio, and removes DC before features.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import EdgeError

FRAME_SECONDS = 0.02


@dataclass
class VadConfig:
    SECTION: ClassVar[str] = "vad"

    # Energy (dB) above the adaptive noise floor for a frame to count as speech.
    energy_margin_db: float = 9.0
    # Frames quieter than this (dBFS, RMS) are never speech, whatever the noise floor.
    min_level_dbfs: float = -55.0
    # Spectral flatness (0 = tonal, 1 = white noise) above which a frame is taken as noise.
    max_flatness: float = 0.45
    # Zero-crossing rate (per sample) above which a frame is taken as hiss, not speech.
    max_zcr: float = 0.35
    # Frames after a speech frame that still count as speech (bridges unvoiced consonants).
    hangover_frames: int = 8
    # Share of the window's frames that must be speech for the window to be classified.
    min_speech_fraction: float = 0.3
    # How fast (dB per second) the noise floor may rise when the room gets louder.
    floor_rise_db_per_s: float = 3.0
    # A window whose RMS is below this (dBFS) is silence.
    silence_dbfs: float = -60.0
    # Samples at or above this absolute value are clipped.
    clip_level: float = 0.99
    # A window with more than this share of clipped samples is reported as clipping.
    max_clipped_fraction: float = 0.001
    # A window whose mean exceeds this absolute value has a DC offset.
    max_dc_offset: float = 0.02

    def validate(self) -> None:
        checks = {
            "energy_margin_db": 0 <= self.energy_margin_db <= 60,
            "min_level_dbfs": -120 <= self.min_level_dbfs <= 0,
            "max_flatness": 0 < self.max_flatness <= 1,
            "max_zcr": 0 < self.max_zcr <= 1,
            "hangover_frames": isinstance(self.hangover_frames, int) and 0 <= self.hangover_frames <= 100,
            "min_speech_fraction": 0 <= self.min_speech_fraction <= 1,
            "floor_rise_db_per_s": self.floor_rise_db_per_s >= 0,
            "silence_dbfs": -150 <= self.silence_dbfs <= 0,
            "clip_level": 0 < self.clip_level <= 1,
            "max_clipped_fraction": 0 <= self.max_clipped_fraction <= 1,
            "max_dc_offset": 0 < self.max_dc_offset < 1,
        }
        for key, ok in checks.items():
            if not ok:
                raise EdgeError(f"{self.SECTION}.{key} = {getattr(self, key)!r} is out of range; see VadConfig")


@dataclass
class VadResult:
    speech_fraction: float  # share of frames judged speech (after hangover)
    level_dbfs: float  # window RMS after DC removal
    noise_floor_dbfs: float  # the floor used for this window
    dc_offset: float  # window mean before removal
    clipped_fraction: float
    problems: list[str] = field(default_factory=list)  # "silence", "clipping", "dc_offset"
    is_speech: bool = False  # enough speech and neither silent nor clipped
    frame_energy_db: np.ndarray | None = field(default=None, repr=False)  # per FRAME_SECONDS frame, after DC removal
    active: np.ndarray | None = field(default=None, repr=False)  # per frame: judged speech (after hangover)
    frame_length: int = 0  # samples per frame

    def to_dict(self) -> dict[str, object]:
        return {
            "speech_fraction": round(self.speech_fraction, 3), "level_dbfs": round(self.level_dbfs, 1),
            "noise_floor_dbfs": round(self.noise_floor_dbfs, 1), "dc_offset": round(self.dc_offset, 4),
            "clipped_fraction": round(self.clipped_fraction, 5), "problems": list(self.problems),
        }


def _db(power: np.ndarray | float) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 1e-15))


@functools.lru_cache(maxsize=8)
def _hanning(length: int) -> np.ndarray:
    window = np.hanning(length)
    window.setflags(write=False)
    return window


class VoiceActivityDetector:
    """Stateful across windows only through the noise floor; one per audio stream."""

    def __init__(self, config: VadConfig | None = None):
        self.config = config or VadConfig()
        self.config.validate()
        self.noise_floor_db: float | None = None
        self._last_end: float | None = None

    def reset(self) -> None:
        self.noise_floor_db = None
        self._last_end = None

    def analyse(self, samples: np.ndarray, rate: int, end_time: float | None = None) -> VadResult:
        """Judge one window (mono float); `end_time` (seconds) paces the floor's rise."""
        cfg = self.config
        x = np.asarray(samples, dtype=np.float64)
        dc = float(x.mean()) if x.size else 0.0
        clipped = float(np.mean(np.abs(x) >= cfg.clip_level)) if x.size else 0.0
        x = x - dc
        level = float(_db(np.mean(x ** 2))) if x.size else -150.0
        problems = []
        if abs(dc) > cfg.max_dc_offset:
            problems.append("dc_offset")
        if clipped > cfg.max_clipped_fraction:
            problems.append("clipping")
        if level < cfg.silence_dbfs:
            problems.append("silence")

        frame_len = max(16, int(round(rate * FRAME_SECONDS)))
        count = len(x) // frame_len
        if count == 0:
            return VadResult(0.0, level, self.noise_floor_db or level, dc, clipped, problems, False)
        frames = x[: count * frame_len].reshape(count, frame_len)
        energy = _db(np.mean(frames ** 2, axis=1))
        self._update_floor(energy, count * frame_len / rate, end_time)
        spectrum = np.abs(np.fft.rfft(frames * _hanning(frame_len), axis=1)) ** 2 + 1e-20
        flatness = np.exp(np.mean(np.log(spectrum), axis=1)) / np.mean(spectrum, axis=1)
        signs = np.signbit(frames)
        zcr = np.mean(signs[:, 1:] != signs[:, :-1], axis=1)
        active = (
            (energy > self.noise_floor_db + cfg.energy_margin_db)
            & (energy > cfg.min_level_dbfs)
            & (flatness < cfg.max_flatness)
            & (zcr < cfg.max_zcr)
        )
        if cfg.hangover_frames and active.any():
            kernel = np.ones(cfg.hangover_frames + 1)
            active = np.convolve(active.astype(float), kernel)[:count] > 0
        fraction = float(active.mean())
        is_speech = fraction >= cfg.min_speech_fraction and not ({"silence", "clipping"} & set(problems))
        return VadResult(fraction, level, float(self.noise_floor_db), dc, clipped, problems, is_speech,
                         energy, active, frame_len)

    def _update_floor(self, energy_db: np.ndarray, duration: float, end_time: float | None) -> None:
        quiet = float(np.percentile(energy_db, 10))
        if self.noise_floor_db is None:
            self.noise_floor_db = quiet
        else:
            elapsed = duration if end_time is None or self._last_end is None else max(0.0, end_time - self._last_end)
            risen = self.noise_floor_db + self.config.floor_rise_db_per_s * elapsed
            self.noise_floor_db = min(risen, quiet)
        self._last_end = end_time
