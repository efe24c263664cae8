"""Sample-rate conversion for the voice model with soxr (libsoxr; ~210 KB wheels for x86_64 and aarch64,
glibc >= 2.26 on aarch64).

Microphones run at 16000, 44100 or 48000 Hz; the voice model wants 22050. soxr "HQ" (its default:
20-bit, passband to 91 % of the lower Nyquist rate, linear phase) replaced a hand-written numpy
Kaiser-sinc resampler: it is several times cheaper per window and closer to the reference.
tests/test_voice_resample.py feeds espeak speech plus broadband noise at 16000/44100/48000 Hz through
this function and through soxr "VHQ" and compares the 181 features of both 22050 Hz results, with
tolerances 4-50x tighter than the numpy resampler needed (docs/voice.md has the measured maxima).
The model's training audio (48 kHz RAVDESS) went through resampy "kaiser_fast"; no resampler here
reproduces that exactly.
"""

from __future__ import annotations

from math import gcd

import numpy as np

from ..errors import EdgeError

MIN_RATE = 8000
MAX_RATE = 192000
MAX_PHASES = 2048  # rates whose reduced ratio is this complex are refused: no microphone runs at them
QUALITY = "HQ"


def ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    """(up, down) in lowest terms."""
    divisor = gcd(int(from_rate), int(to_rate))
    return int(to_rate) // divisor, int(from_rate) // divisor


def check_rate(from_rate: int, to_rate: int, key: str = "rate") -> None:
    """Raise EdgeError (naming `key`) for a rate no microphone or file for this model should have."""
    if int(from_rate) != from_rate or not MIN_RATE <= from_rate <= MAX_RATE:
        raise EdgeError(f"{key} = {from_rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz; use 16000, 44100 or 48000")
    up, _ = ratio(int(from_rate), int(to_rate))
    if up > MAX_PHASES:
        raise EdgeError(
            f"{key} = {from_rate} Hz is not a standard audio rate (its ratio to {to_rate} Hz is {up}/"
            f"{ratio(int(from_rate), int(to_rate))[1]}); use 16000, 22050, 44100 or 48000 Hz"
        )


def resample(samples: np.ndarray, from_rate: int, to_rate: int, quality: str = QUALITY) -> np.ndarray:
    """The signal at `to_rate` (float32 mono in, float32 out), resampled by soxr in one call."""
    samples = np.asarray(samples, dtype=np.float32)
    if from_rate == to_rate:
        return samples
    check_rate(from_rate, to_rate)
    import soxr  # a runtime dependency; imported here so config checks never need it

    return np.asarray(soxr.resample(samples, int(from_rate), int(to_rate), quality), dtype=np.float32)
