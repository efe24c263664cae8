"""Per-channel signal quality and artifact rejection for one window.

Quality (for health and the event): each channel is "ok", "flat" (raw std below eeg.flat_uv:
no skin contact or a dead electrode), "saturated" (raw at the amplifier limit), "noisy"
(filtered std above eeg.noisy_uv: poor contact, movement) or "invalid" (non-finite samples),
with a score in [0, 1] (1 = clean). Artifacts (window rejected, features not trusted): blinks
as large frontal deflections, jaw clenches as temporal 30-45 Hz muscle power, and any of the
required channels not "ok".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.eeg.config import EEGConfig
from edge.eeg.features import BANDS, welch_psd

_PRIORITY = ("invalid", "flat", "saturated", "blink", "jaw_clench", "noisy")


@dataclass
class ChannelQuality:
    status: str  # ok | flat | saturated | noisy | invalid
    score: float  # 1 clean ... 0 unusable
    std_uv: float  # filtered standard deviation

    def to_dict(self) -> dict:
        return {"status": self.status, "score": round(self.score, 3), "std_uv": round(self.std_uv, 2)}


@dataclass
class Assessment:
    channels: dict[str, ChannelQuality]
    rejected: bool
    reason: str | None  # first reason, e.g. "blink:AF7" or "flat:AF8"
    reasons: list[str]


def channel_quality(raw: np.ndarray, filtered: np.ndarray, bad: np.ndarray, config: EEGConfig) -> list[ChannelQuality]:
    """Status and score of each column of a window."""
    result = []
    for c in range(raw.shape[1]):
        finite = raw[~bad[:, c], c]
        std = float(np.std(filtered[:, c]))
        bad_fraction = float(bad[:, c].mean())
        if bad_fraction > 0:
            result.append(ChannelQuality("invalid", max(0.0, 1.0 - bad_fraction) * 0.5, std))
            continue
        raw_std = float(np.std(finite))
        saturated = float(np.mean(np.abs(finite) >= config.saturation_uv))
        if saturated >= config.saturated_fraction:
            result.append(ChannelQuality("saturated", 0.0, std))
        elif raw_std < config.flat_uv:
            result.append(ChannelQuality("flat", 0.0, std))
        else:
            # Smooth fall from 1 to 0.5 at the noise threshold, and towards 0 beyond it.
            score = 1.0 / (1.0 + (std / config.noisy_uv) ** 4)
            result.append(ChannelQuality("noisy" if std > config.noisy_uv else "ok", score, std))
    return result


def muscle_rms(x: np.ndarray, rate: float) -> float:
    """Largest 30-45 Hz RMS (uV) over the window's half-overlapping 1 s pieces.

    A clench lasts well under a second; averaged over the whole 4 s window it would be diluted.
    """
    piece = min(len(x), max(8, round(rate)))
    low, high = BANDS["gamma"]
    worst = 0.0
    for start in range(0, len(x) - piece + 1, max(1, piece // 2)):
        freqs, psd = welch_psd(x[start:start + piece], rate, segment=piece)
        mask = (freqs >= low) & (freqs < high)
        worst = max(worst, float(psd[mask, 0].sum() * (freqs[1] - freqs[0])))
    return float(np.sqrt(worst))


def assess(raw: np.ndarray, filtered: np.ndarray, bad: np.ndarray, config: EEGConfig,
           rate: float = 0.0) -> Assessment:
    """Quality of every channel plus the reject decision; give the rate to enable jaw-clench checks."""
    channels = list(config.channels)
    quality = dict(zip(channels, channel_quality(raw, filtered, bad, config)))
    reasons = [f"{q.status}:{name}" for name, q in quality.items()
               if name in config.required_channels and q.status != "ok"]
    for name in config.blink_channels:
        if quality[name].status in ("flat", "saturated", "invalid"):
            continue
        column = filtered[:, channels.index(name)]
        if float(np.max(np.abs(column - np.median(column)))) > config.blink_uv:
            reasons.append(f"blink:{name}")
    if rate > 0:
        for name in config.jaw_channels:
            if quality[name].status in ("flat", "saturated", "invalid"):
                continue
            if muscle_rms(filtered[:, channels.index(name)], rate) > config.jaw_uv:
                reasons.append(f"jaw_clench:{name}")
    # Most specific cause first: a blink explains a "noisy" frontal channel better than "noisy" does.
    reasons.sort(key=lambda r: _PRIORITY.index(r.split(":")[0]))
    return Assessment(quality, bool(reasons), reasons[0] if reasons else None, reasons)
