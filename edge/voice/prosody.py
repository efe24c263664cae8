"""Prosodic arousal: how loud, how high and how fast someone speaks, against how they usually speak.

Arousal (calm vs excited) shows in the voice as loudness, pitch and speaking rate rising together
(Banse & Scherer 1996; Juslin & Laukka 2003), across languages and without a trained model. Absolute
values mean little (a microphone's gain, a deep or high voice), so each is scored against a rolling
baseline of the same stream: the speech windows of the last `baseline_s` seconds.

Per speech window, on the VAD's speech frames only:
- energy: RMS level of the speech frames in dBFS;
- pitch: median F0 in semitones (re 100 Hz) of the voiced frames, by a YIN-style cumulative mean
  normalised difference on 40 ms frames at 11025 Hz, 75-400 Hz, numpy only;
- rate: syllable-like peaks per second of speech: local maxima of the smoothed 20 ms energy envelope
  that rise at least `peak_prominence_db` above the dips on both sides, at least 100 ms apart.

Each is a z-score against the baseline (mean and standard deviation, the deviation floored so a
monotonous baseline does not turn small changes into large scores); arousal = tanh of the weighted
mean z-score / `scale`, in (-1, 1). A feature missing in a window (no voiced frames: whispering)
drops out and the others are re-weighted. Until the baseline holds `warmup_windows` windows, arousal
is None ("learning the speaker"). The "speaker" is the stream: with several people in the room the
baseline is their mix; it is not speaker identification.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

PITCH_RATE_DIVISOR = 2  # F0 is searched at model rate / 2 (11025 Hz): ample for 75-400 Hz
F0_MIN, F0_MAX = 75.0, 400.0
YIN_THRESHOLD = 0.2  # cumulative-mean-normalised difference below which a period is accepted
PITCH_FRAME_S = 0.04
MIN_VOICED_FRAMES = 3
MIN_SPEECH_S = 0.4  # less speech than this in a window gives no rate
FEATURES = ("energy", "pitch", "rate")


@dataclass(frozen=True)
class ProsodyFeatures:
    energy_db: float  # RMS of the speech frames, dBFS
    pitch_st: float | None  # median F0 in semitones re 100 Hz; None without voiced frames
    rate_hz: float | None  # syllable-like peaks per second of speech; None with too little speech
    voiced_fraction: float  # share of speech frames with an F0
    speech_s: float

    def values(self) -> dict[str, float | None]:
        return {"energy": self.energy_db, "pitch": self.pitch_st, "rate": self.rate_hz}


@dataclass
class ProsodyConfig:
    """Set through VoiceConfig's prosody_* keys."""

    baseline_s: float = 300.0
    warmup_windows: int = 8
    weights: tuple[float, float, float] = (0.45, 0.35, 0.20)  # energy, pitch, rate
    min_std: tuple[float, float, float] = (1.5, 1.0, 0.4)  # dB, semitones, peaks per second
    scale: float = 1.5
    peak_prominence_db: float = 3.0


def _pitch_frames(samples: np.ndarray, rate: int, starts: np.ndarray) -> np.ndarray:
    """F0 (Hz, NaN when unvoiced) of 40 ms frames starting at `starts` (indices at `rate`)."""
    if starts.size == 0:
        return np.zeros(0)
    n = len(samples) // PITCH_RATE_DIVISOR * PITCH_RATE_DIVISOR
    low = samples[:n].reshape(-1, PITCH_RATE_DIVISOR).mean(axis=1)  # pairwise mean: a crude low-pass, then / 2
    low_rate = rate / PITCH_RATE_DIVISOR
    width = int(round(PITCH_FRAME_S * low_rate))
    tau_max = int(math.ceil(low_rate / F0_MIN))
    tau_min = int(math.floor(low_rate / F0_MAX))
    span = width - tau_max  # the difference is summed over this many samples for every lag
    if span < tau_max // 2:
        return np.full(starts.size, np.nan)
    begin = np.minimum(starts // PITCH_RATE_DIVISOR, max(len(low) - width, 0))
    if len(low) < width:
        return np.full(starts.size, np.nan)
    frames = low[begin[:, None] + np.arange(width)[None, :]]
    frames = frames - frames.mean(axis=1, keepdims=True)
    size = 1 << int(math.ceil(math.log2(width + span)))
    head = np.fft.rfft(frames[:, :span], size, axis=1)
    full = np.fft.rfft(frames, size, axis=1)
    cross = np.fft.irfft(np.conj(head) * full, size, axis=1)[:, :tau_max + 1]  # sum x[j] x[j + tau], j < span
    squares = np.concatenate([np.zeros((frames.shape[0], 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    energy0 = squares[:, span][:, None]
    lags = np.arange(tau_max + 1)
    energy_tau = squares[:, lags + span] - squares[:, lags]
    diff = np.maximum(energy0 + energy_tau - 2 * cross, 0.0)
    running = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[:, 1:] = np.where(running > 0, diff[:, 1:] * lags[1:] / running, 1.0)
    f0 = np.full(frames.shape[0], np.nan)
    searched = cmnd[:, tau_min:tau_max]
    below = searched < YIN_THRESHOLD
    for row in np.nonzero(below.any(axis=1))[0]:
        tau = int(np.argmax(below[row])) + tau_min
        while tau + 1 < tau_max and cmnd[row, tau + 1] < cmnd[row, tau]:
            tau += 1
        a, b, c = cmnd[row, tau - 1], cmnd[row, tau], cmnd[row, tau + 1]
        bend = a + c - 2 * b
        shift = 0.5 * (a - c) / bend if bend > 0 else 0.0
        f0[row] = low_rate / (tau + float(np.clip(shift, -0.5, 0.5)))
    return f0


def _syllable_peaks(energy_db: np.ndarray, active: np.ndarray, prominence_db: float, frame_s: float) -> int:
    """Local maxima of the smoothed envelope in speech frames that stand out from the dips on both sides."""
    if energy_db.size < 5:
        return 0
    envelope = np.convolve(energy_db, np.array([1.0, 2.0, 1.0]) / 4, mode="same")
    envelope[0], envelope[-1] = energy_db[0], energy_db[-1]
    gap = max(1, int(round(0.1 / frame_s)))  # peaks at least 100 ms apart
    peaks, last = 0, -gap
    for i in np.nonzero((envelope[1:-1] > envelope[:-2]) & (envelope[1:-1] >= envelope[2:]))[0] + 1:
        if not active[i] or i - last < gap:
            continue
        left = envelope[max(0, i - 4 * gap):i].min(initial=envelope[i])
        right = envelope[i + 1:i + 1 + 4 * gap].min(initial=envelope[i])
        if envelope[i] - max(left, right) >= prominence_db:
            peaks += 1
            last = i
    return peaks


def measure(samples: np.ndarray, rate: int, frame_energy_db: np.ndarray, active: np.ndarray, frame_length: int,
            prominence_db: float = 3.0) -> ProsodyFeatures | None:
    """Energy, pitch and rate of one window's speech frames (None when no frame is speech)."""
    if active is None or not active.any():
        return None
    frame_s = frame_length / rate
    speech = np.nonzero(active)[0]
    energy = float(10.0 * np.log10(np.mean(10.0 ** (frame_energy_db[speech] / 10.0))))
    # F0 of every other speech frame: 40 ms frames 40 ms apart, plenty for a median over a window
    f0 = _pitch_frames(np.asarray(samples, dtype=np.float64), rate, speech[::2] * frame_length)
    voiced = f0[np.isfinite(f0)]
    pitch = float(12.0 * np.log2(np.median(voiced) / 100.0)) if voiced.size >= MIN_VOICED_FRAMES else None
    speech_s = speech.size * frame_s
    rate_hz = None
    if speech_s >= MIN_SPEECH_S:
        rate_hz = _syllable_peaks(frame_energy_db, active, prominence_db, frame_s) / speech_s
    return ProsodyFeatures(energy, pitch, rate_hz, float(voiced.size / max(1, f0.size)), speech_s)


class ProsodyBaseline:
    """Rolling per-stream baseline of window features and the arousal of a new window against it."""

    def __init__(self, config: ProsodyConfig | None = None):
        self.config = config or ProsodyConfig()
        self._history: deque[tuple[float, ProsodyFeatures]] = deque()

    def reset(self) -> None:
        self._history.clear()

    def __len__(self) -> int:
        return len(self._history)

    def _expire(self, now: float) -> None:
        while self._history and self._history[0][0] < now - self.config.baseline_s:
            self._history.popleft()

    def score(self, features: ProsodyFeatures, timestamp: float) -> dict[str, Any]:
        """Arousal (None while warming up), the z-scores and the baseline's maturity in [0, 1]; then learn it."""
        cfg = self.config
        self._expire(timestamp)
        count = len(self._history)
        result: dict[str, Any] = {"arousal": None, "z": {}, "baseline_windows": count,
                                  "maturity": min(1.0, count / (2 * cfg.warmup_windows))}
        if count >= cfg.warmup_windows:
            total = weight_sum = 0.0
            for index, name in enumerate(FEATURES):
                value = features.values()[name]
                past = np.array([f.values()[name] for _, f in self._history if f.values()[name] is not None])
                if value is None or past.size < cfg.warmup_windows // 2 or past.size < 2:
                    continue
                z = (value - float(past.mean())) / max(float(past.std()), cfg.min_std[index])
                result["z"][name] = round(z, 3)
                total += cfg.weights[index] * z
                weight_sum += cfg.weights[index]
            if weight_sum > 0:
                result["arousal"] = math.tanh(total / weight_sum / cfg.scale)
        self._history.append((timestamp, features))
        return result
