"""Band features of one EEG window: Welch band power, differential entropy, frontal asymmetry.

Shared by the live pipeline and the training command (export/eeg_data.py), so a model is trained on exactly
the numbers it will see on the device. Conventions:
- band power: integral of the one-sided Welch PSD (periodic Hann window, 50% overlap, mean removed, density scaling) over the band,
  in uV^2; equals the variance of the signal restricted to that band.
- differential entropy (Shi, Jiao & Lu 2013; Zheng & Lu 2015, SEED): for a band-limited Gaussian
  signal DE = 0.5 * ln(2 * pi * e * variance); we use the band power as that variance.
- frontal alpha asymmetry: ln(alpha AF8) - ln(alpha AF7) (right minus left, Davidson 1992).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.errors import EdgeError

BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}

_POWER_FLOOR = 1e-12  # uV^2; keeps logs finite on a flat channel (the window is rejected anyway)


def welch_psd(x: np.ndarray, fs: float, segment: int = 256, overlap: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One-sided PSD per channel of x shaped (n_samples, n_channels); returns (freqs, psd[freq, channel])."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    segment = min(segment, n)
    if segment < 8:
        raise EdgeError(f"window of {n} samples is too short for a PSD; use a longer eeg.window_s")
    step = max(1, round(segment * (1.0 - overlap)))
    starts = range(0, n - segment + 1, step)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(segment) / segment)  # periodic Hann
    scale = 1.0 / (fs * np.sum(window ** 2))
    psd = np.zeros((segment // 2 + 1, x.shape[1]))
    count = 0
    for start in starts:
        seg = x[start:start + segment]
        seg = seg - seg.mean(axis=0)
        spectrum = np.fft.rfft(seg * window[:, None], axis=0)
        psd += (np.abs(spectrum) ** 2) * scale
        count += 1
    psd /= count
    if segment % 2 == 0:
        psd[1:-1] *= 2.0  # fold negative frequencies; DC and Nyquist appear once
    else:
        psd[1:] *= 2.0
    freqs = np.fft.rfftfreq(segment, 1.0 / fs)
    return freqs, psd


def band_powers(freqs: np.ndarray, psd: np.ndarray, bands: dict[str, tuple[float, float]] = BANDS) -> np.ndarray:
    """Power per (channel, band) by summing PSD bins in [low, high) times the bin width."""
    df = freqs[1] - freqs[0]
    out = np.empty((psd.shape[1], len(bands)))
    for j, (low, high) in enumerate(bands.values()):
        mask = (freqs >= low) & (freqs < high)
        if not mask.any():
            raise EdgeError(f"band {low}-{high} Hz has no PSD bin; use a longer eeg.welch_segment_s")
        out[:, j] = psd[mask].sum(axis=0) * df
    return out


def differential_entropy(power: np.ndarray) -> np.ndarray:
    """Gaussian differential entropy of band-limited signals with the given variance (nats)."""
    return 0.5 * np.log(2.0 * math.pi * math.e * np.maximum(power, _POWER_FLOOR))


@dataclass
class FeatureSet:
    """Everything the estimators and the event need from one window."""

    channels: tuple[str, ...]
    bands: tuple[str, ...]
    band_power: np.ndarray  # (channels, bands), uV^2
    differential_entropy: np.ndarray  # (channels, bands), nats
    alpha_asymmetry: float  # ln(alpha right frontal) - ln(alpha left frontal)
    beta_alpha_log_ratio: float  # ln(mean frontal beta / mean frontal alpha)
    extra: dict = field(default_factory=dict)

    def vector(self, kind: str = "de") -> np.ndarray:
        """Flat feature vector (channel-major) for a classifier: "de", "psd" (log power) or "both"."""
        if kind == "de":
            return self.differential_entropy.ravel().copy()
        if kind == "psd":
            return np.log(np.maximum(self.band_power, _POWER_FLOOR)).ravel()
        if kind == "both":
            return np.concatenate([self.vector("de"), self.vector("psd")])
        raise EdgeError(f"feature kind must be de, psd or both, not {kind!r}")

    def names(self, kind: str = "de") -> list[str]:
        """Names matching vector(kind), e.g. "de_AF7_alpha"."""
        kinds = ["de", "psd"] if kind == "both" else [kind]
        return [f"{k}_{c}_{b}" for k in kinds for c in self.channels for b in self.bands]

    def band_summary(self) -> dict[str, float]:
        """Mean band power over channels, rounded, for the event's extra."""
        means = self.band_power.mean(axis=0)
        return {band: round(float(p), 3) for band, p in zip(self.bands, means)}


def extract_features(window: np.ndarray, fs: float, channels: Sequence[str],
                     left_frontal: str = "AF7", right_frontal: str = "AF8",
                     welch_segment: int = 256, bands: dict[str, tuple[float, float]] = BANDS) -> FeatureSet:
    """Features of one filtered window shaped (n_samples, n_channels) whose columns are `channels`."""
    window = np.asarray(window, dtype=np.float64)
    if window.ndim != 2 or window.shape[1] != len(channels):
        raise EdgeError(f"window shape {window.shape} does not match channels {list(channels)}")
    for name in (left_frontal, right_frontal):
        if name not in channels:
            raise EdgeError(f"frontal channel {name!r} is not among the stream channels {list(channels)}")
    freqs, psd = welch_psd(window, fs, segment=welch_segment)
    power = band_powers(freqs, psd, bands)
    names = tuple(bands)
    left, right = channels.index(left_frontal), channels.index(right_frontal)
    alpha, beta = names.index("alpha"), names.index("beta")
    floor = _POWER_FLOOR
    asymmetry = math.log(max(power[right, alpha], floor)) - math.log(max(power[left, alpha], floor))
    frontal = [left, right]
    ratio = math.log(max(power[frontal, beta].mean(), floor) / max(power[frontal, alpha].mean(), floor))
    return FeatureSet(tuple(channels), names, power, differential_entropy(power), asymmetry, ratio)
