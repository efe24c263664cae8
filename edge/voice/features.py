"""The speech-emotion model's 181-value input, computed with numpy alone.

The default voice model (audioanalytics, RAVDESS, 4 classes) was trained on librosa features at
22050 Hz with librosa's defaults: the means over time of 40 MFCC, 12 chroma (from the
*magnitude* STFT, as its `extract_feature` passes `S=np.abs(librosa.stft(X))`), 128 mel power
bands and the zero-crossing rate, stacked in that order. librosa (and scipy, numba) are too heavy
for the device, so this module re-implements exactly those defaults:

- STFT: n_fft 2048, hop 512, periodic Hann window, centred frames. librosa >= 0.10 pads the
  centre with zeros (`pad_mode="constant"`); librosa 0.8/0.9, current when the model was trained,
  padded with `"reflect"`. Both are available via `pad_mode`; "constant" matches today's librosa.
- Mel: Slaney mel scale (htk=False), Slaney area normalisation, fmin 0, fmax sr/2, on the power
  spectrogram; MFCC = DCT-II (ortho) of power_to_db(mel) with ref 1.0, amin 1e-10, top_db 80.
- Chroma: librosa's Gaussian chroma filterbank (ctroct 5, octwidth 2, L2 column norm, base C) on
  the magnitude spectrogram, each frame divided by its max (norm=inf; all-zero frames stay 0).
  chroma_stft estimates the tuning by default (piptrack 150-4000 Hz, threshold 0.1, median
  magnitude gate, 0.01-semitone histogram), so that is implemented too; filterbanks are cached per
  (rate, tuning).
- ZCR: frames of 2048, hop 512, centred with edge padding, |x| <= 1e-10 counts as zero.

Agreement with librosa 0.11.0 on real espeak-ng speech (tests/test_voice_features.py: 10 clips,
voices en-us/en/de/fr/es and 110-220 words per minute, each whole and as two 2.5 s windows), with
the tolerance asserted there and the largest error measured on this machine:

  group   tolerance                                  measured max error
  mfcc    abs 1e-3 (values span about -600..+150)    6.1e-5
  chroma  abs 1e-4 (values in [0, 1])                3.6e-7 (tuning estimate identical on all 30)
  mel     rel 1e-5 of each band's mean power         2.9e-7
  zcr     abs 1e-6                                   3.5e-9

Skipping the tuning estimate would move chroma by up to 0.075 (whole clips) / 0.135 (2.5 s
windows); "reflect" instead of "constant" padding moves 2.5 s-window mel bands by up to 44 %.
The residual differences come from librosa rounding the STFT to complex64 and its filterbanks to
float32; this module computes in float64.

No product here reaches numpy's threaded BLAS: OpenBLAS (numpy's BLAS in the x86_64 and aarch64
wheels) hands a product of more than 4 x 65536 multiply-adds to its thread pool, whose threads then
busy-wait between calls, costing far more CPU than the arithmetic (benchmarks/voice_cpu.py, docs/voice.md).
So the mel filterbank is applied as a sparse sum (each FFT bin feeds at most two bands) and the dense products run in column blocks below
that threshold, on the calling thread, with the same sums.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import EdgeError

MODEL_RATE = 22050
N_FFT = 2048
HOP = 512
N_MFCC = 40
N_CHROMA = 12
N_MELS = 128
FEATURE_SIZE = N_MFCC + N_CHROMA + N_MELS + 1  # 181
GROUPS = {"mfcc": slice(0, 40), "chroma": slice(40, 52), "mel": slice(52, 180), "zcr": slice(180, 181)}
PAD_MODES = ("constant", "reflect")


@functools.lru_cache(maxsize=None)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window, as scipy.signal.get_window('hann', n, fftbins=True)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)


def frame(y: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Frames as rows (a strided view, no copy)."""
    count = 1 + (len(y) - length) // hop
    return np.lib.stride_tricks.as_strided(
        y, shape=(count, length), strides=(hop * y.strides[0], y.strides[0]), writeable=False
    )


def magnitude_stft(y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP, pad_mode: str = "constant") -> np.ndarray:
    """|STFT| with frames centred on y[t * hop]; shape (1 + n_fft // 2, frames)."""
    padded = np.pad(np.asarray(y, dtype=np.float64), n_fft // 2, mode=pad_mode)
    frames = frame(padded, n_fft, hop) * hann_window(n_fft)
    return np.abs(np.fft.rfft(frames, axis=1)).T


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_region = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_region, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


@functools.lru_cache(maxsize=None)
def mel_filterbank(rate: int, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular filters from 0 Hz to rate / 2; (n_mels, bins)."""
    fft_freqs = np.linspace(0, rate / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    weights.setflags(write=False)
    return weights


@functools.lru_cache(maxsize=None)
def _mel_sparse(rate: int, n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The filterbank's non-zero weights by band: (weights, bins, first entry per band, empty-band mask)."""
    bands, bins = np.nonzero(mel_filterbank(rate, n_fft, n_mels))
    weights = mel_filterbank(rate, n_fft, n_mels)[bands, bins]
    starts = np.searchsorted(bands, np.arange(n_mels))
    empty = np.bincount(bands, minlength=n_mels) == 0
    return weights, bins, np.minimum(starts, max(len(bands) - 1, 0)), empty


def apply_mel(power: np.ndarray, rate: int, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """mel_filterbank(rate, n_fft, n_mels) @ power, as a sparse sum (no BLAS threads); (n_mels, frames)."""
    weights, bins, starts, empty = _mel_sparse(rate, n_fft, n_mels)
    mel = np.add.reduceat(weights[:, None] * power[bins], starts, axis=0)
    mel[empty] = 0.0
    return mel


# OpenBLAS keeps a product of at most 4 x 65536 multiply-adds on the calling thread.
SINGLE_THREAD_PRODUCT = 4 * 65536


def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in column blocks small enough that OpenBLAS never wakes its thread pool."""
    step = max(1, SINGLE_THREAD_PRODUCT // max(1, a.shape[0] * a.shape[1]))
    if b.shape[1] <= step:
        return a @ b
    return np.concatenate([a @ b[:, i:i + step] for i in range(0, b.shape[1], step)], axis=1)


@functools.lru_cache(maxsize=None)
def dct_matrix(n_out: int = N_MFCC, n_in: int = N_MELS) -> np.ndarray:
    """Orthonormal DCT-II basis, first n_out rows; (n_out, n_in)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    basis.setflags(write=False)
    return basis


@functools.lru_cache(maxsize=8)  # keyed by the estimated tuning too: kept small so it cannot grow the heap
def chroma_filterbank(rate: int, n_fft: int = N_FFT, tuning: float = 0.0, n_chroma: int = N_CHROMA) -> np.ndarray:
    """librosa's chroma filters (ctroct 5, octwidth 2, L2 norm, base C); (n_chroma, bins)."""
    frequencies = np.linspace(0, rate, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (a440 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidth = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1.0]))
    distance = frqbins[None, :] - np.arange(n_chroma, dtype=np.float64)[:, None]
    half = np.round(n_chroma / 2.0)
    distance = np.remainder(distance + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / binwidth[None, :]) ** 2)
    weights /= np.sqrt((weights ** 2).sum(axis=0, keepdims=True))
    weights *= np.exp(-0.5 * ((frqbins / n_chroma - 5.0) / 2.0) ** 2)[None, :]
    weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)
    result = np.ascontiguousarray(weights[:, : 1 + n_fft // 2])
    result.setflags(write=False)
    return result


def estimate_tuning(magnitude: np.ndarray, rate: int, n_fft: int = N_FFT, bins_per_octave: int = N_CHROMA) -> float:
    """Deviation from A440 in fractional chroma bins, as librosa.estimate_tuning on a spectrogram.

    librosa's piptrack keeps only peaks from 150 Hz to 4 kHz, so only those bins (and their two
    neighbours) are examined; the gate is still 0.1 x each frame's maximum over every bin."""
    mag = np.abs(magnitude)
    fft_freqs = np.linspace(0, rate / 2, 1 + n_fft // 2)
    rows = np.nonzero((fft_freqs >= 150.0) & (fft_freqs < min(4000.0, rate / 2)))[0]
    if rows.size == 0:
        return 0.0
    first, last = int(rows[0]), int(rows[-1])  # 150 Hz > bin 0 and < rate / 2: both have two neighbours
    part = mag[first - 1:last + 2]
    below, centre, above = part[:-2], part[1:-1], part[2:]
    a = above + below - 2 * centre
    b = (above - below) / 2  # also np.gradient's value at interior bins
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a)
    gated = part * (part > 0.1 * mag.max(axis=0, keepdims=True))
    peaks = (gated[1:-1] > gated[:-2]) & (gated[1:-1] >= gated[2:])
    index, cols = np.nonzero(peaks)
    pitch = (index + first + shift[index, cols]) * float(rate) / n_fft
    strength = centre[index, cols] + 0.5 * b[index, cols] * shift[index, cols]
    positive = pitch > 0
    if not positive.any():
        return 0.0
    threshold = np.median(strength[positive])
    frequencies = pitch[(strength >= threshold) & positive]
    frequencies = frequencies[frequencies > 0]
    if frequencies.size == 0:
        return 0.0
    residual = np.mod(bins_per_octave * np.log2(frequencies / (440.0 / 16)), 1.0)
    residual[residual >= 0.5] -= 1.0
    edges = np.linspace(-0.5, 0.5, 101)
    counts, _ = np.histogram(residual, edges)
    return float(edges[np.argmax(counts)])


def power_to_db(power: np.ndarray, amin: float = 1e-10, top_db: float = 80.0) -> np.ndarray:
    """10 log10(power) with ref 1.0, floored at amin and at top_db below the maximum."""
    log_spec = 10.0 * np.log10(np.maximum(amin, power))
    return np.maximum(log_spec, log_spec.max() - top_db)


def zero_crossing_rate(y: np.ndarray, frame_length: int = N_FFT, hop: int = HOP, threshold: float = 1e-10) -> np.ndarray:
    """Fraction of sign changes per centred frame; the first sample of a frame never counts."""
    padded = np.pad(np.asarray(y, dtype=np.float64), frame_length // 2, mode="edge")
    negative = padded < -threshold
    change = np.zeros(len(padded), dtype=np.float64)
    change[1:] = negative[1:] != negative[:-1]
    frames = frame(change, frame_length, hop)
    return (frames[:, 1:].sum(axis=1)) / frame_length


class FeatureExtractor:
    """Computes the 181-value vector (and its per-frame groups) for one sample rate."""

    def __init__(self, rate: int = MODEL_RATE, pad_mode: str = "constant", tuning: float | None = None):
        if pad_mode not in PAD_MODES:
            raise EdgeError(f"voice.pad_mode must be one of {', '.join(PAD_MODES)}, not {pad_mode!r}")
        self.rate = int(rate)
        self.pad_mode = pad_mode
        self.fixed_tuning = tuning
        self.dct = dct_matrix()
        self.last_tuning = 0.0

    def frames(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """Per-frame features by group, each (values, frames), as librosa returns them."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"features need a non-empty mono signal, got shape {y.shape}")
        magnitude = magnitude_stft(y, pad_mode=self.pad_mode)
        power = magnitude ** 2
        mel = apply_mel(power, self.rate)
        mfcc = product(self.dct, power_to_db(mel))
        tuning = estimate_tuning(magnitude, self.rate) if self.fixed_tuning is None else self.fixed_tuning
        self.last_tuning = tuning
        raw = product(chroma_filterbank(self.rate, tuning=tuning), magnitude)
        peak = raw.max(axis=0, keepdims=True)
        peak[peak < np.finfo(np.float64).tiny] = 1.0
        chroma = raw / peak
        zcr = zero_crossing_rate(y)[None, :]
        return {"mfcc": mfcc, "chroma": chroma, "mel": mel, "zcr": zcr}

    def extract(self, y: np.ndarray) -> np.ndarray:
        """Means over time, stacked as mfcc(40), chroma(12), mel(128), zcr(1): float32 (181,)."""
        groups = self.frames(y)
        return np.concatenate([groups[name].mean(axis=1) for name in GROUPS]).astype(np.float32)
