"""Streaming IIR filters designed with numpy only (no scipy on the device).

Band-pass = Butterworth high-pass cascaded with a Butterworth low-pass, each built from
second-order sections with the bilinear-transform formulas of the RBJ "Audio EQ Cookbook"
(prewarped at the cutoff, so they equal scipy.signal.butter for even orders). The mains notch
is the standard second-order digital notch with a -3 dB bandwidth of f0/Q (same response as
scipy.signal.iirnotch). Sections run in transposed direct form II and keep their state across
chunks, so a stream can be filtered 12 samples at a time with the same result as all at once.
"""

from __future__ import annotations

import math

import numpy as np

from edge.errors import EdgeError


def butterworth_qs(order: int) -> list[float]:
    """Q of each biquad in an even-order Butterworth cascade (poles evenly spread on the circle)."""
    if order < 2 or order % 2:
        raise EdgeError(f"Butterworth order must be an even number >= 2, not {order}")
    return [1.0 / (2.0 * math.sin((2 * k + 1) * math.pi / (2 * order))) for k in range(order // 2)]


def _check_frequency(fs: float, f0: float, what: str) -> None:
    if not 0.0 < f0 < fs / 2.0:
        raise EdgeError(f"{what} frequency {f0} Hz must lie between 0 and Nyquist ({fs / 2.0} Hz)")


def biquad_lowpass(fs: float, f0: float, q: float) -> np.ndarray:
    """RBJ low-pass section as [b0, b1, b2, 1, a1, a2]."""
    _check_frequency(fs, f0, "low-pass")
    w0 = 2.0 * math.pi * f0 / fs
    cos_w, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    b = [(1 - cos_w) / 2, 1 - cos_w, (1 - cos_w) / 2]
    a = [1 + alpha, -2 * cos_w, 1 - alpha]
    return np.array(b + a, dtype=np.float64) / a[0]


def biquad_highpass(fs: float, f0: float, q: float) -> np.ndarray:
    """RBJ high-pass section as [b0, b1, b2, 1, a1, a2]."""
    _check_frequency(fs, f0, "high-pass")
    w0 = 2.0 * math.pi * f0 / fs
    cos_w, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    b = [(1 + cos_w) / 2, -(1 + cos_w), (1 + cos_w) / 2]
    a = [1 + alpha, -2 * cos_w, 1 - alpha]
    return np.array(b + a, dtype=np.float64) / a[0]


def biquad_bandpass(fs: float, f0: float, q: float) -> np.ndarray:
    """RBJ band-pass section with 0 dB peak gain (used by the simulator to shape rhythms)."""
    _check_frequency(fs, f0, "band-pass centre")
    w0 = 2.0 * math.pi * f0 / fs
    cos_w, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    b = [alpha, 0.0, -alpha]
    a = [1 + alpha, -2 * cos_w, 1 - alpha]
    return np.array(b + a, dtype=np.float64) / a[0]


def biquad_notch(fs: float, f0: float, q: float) -> np.ndarray:
    """Second-order notch at f0 whose -3 dB bandwidth is f0/q."""
    _check_frequency(fs, f0, "notch")
    w0 = 2.0 * math.pi * f0 / fs
    beta = math.tan(math.pi * (f0 / q) / fs)
    gain = 1.0 / (1.0 + beta)
    cos_w = math.cos(w0)
    return np.array([gain, -2 * gain * cos_w, gain, 1.0, -2 * gain * cos_w, 2 * gain - 1], dtype=np.float64)


def bandpass_sos(fs: float, low_hz: float, high_hz: float, order: int = 4) -> np.ndarray:
    """High-pass(low_hz) + low-pass(high_hz) Butterworth cascade, shape (order, 6)."""
    if not low_hz < high_hz:
        raise EdgeError(f"band-pass low edge {low_hz} Hz must be below the high edge {high_hz} Hz")
    qs = butterworth_qs(order)
    sections = [biquad_highpass(fs, low_hz, q) for q in qs] + [biquad_lowpass(fs, high_hz, q) for q in qs]
    return np.vstack(sections)


def frequency_response(sos: np.ndarray, freqs: np.ndarray, fs: float) -> np.ndarray:
    """Complex response of a section cascade at the given frequencies (for tests and docs)."""
    z = np.exp(-1j * 2.0 * np.pi * np.asarray(freqs, dtype=np.float64) / fs)
    response = np.ones_like(z)
    for b0, b1, b2, a0, a1, a2 in np.atleast_2d(sos):
        response *= (b0 + b1 * z + b2 * z * z) / (a0 + a1 * z + a2 * z * z)
    return response


class SosFilter:
    """A cascade of biquads over several channels that keeps its state between calls."""

    def __init__(self, sos: np.ndarray, n_channels: int):
        self.sos = np.atleast_2d(np.asarray(sos, dtype=np.float64))
        if self.sos.shape[1] != 6:
            raise EdgeError("second-order sections must have 6 coefficients each")
        self.n_channels = n_channels
        self._z = np.zeros((len(self.sos), 2, n_channels))

    def reset(self, initial: np.ndarray | None = None) -> None:
        """Zero the state, or set it to the steady state for a constant input (avoids a DC step)."""
        self._z[:] = 0.0
        if initial is None:
            return
        u = np.asarray(initial, dtype=np.float64).reshape(self.n_channels)
        for i, (b0, b1, b2, _, a1, a2) in enumerate(self.sos):
            dc_gain = (b0 + b1 + b2) / (1.0 + a1 + a2)
            y = dc_gain * u
            self._z[i, 0] = y - b0 * u
            self._z[i, 1] = b2 * u - a2 * y
            u = y

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter samples shaped (n_samples, n_channels); returns a new array of the same shape."""
        y = np.array(x, dtype=np.float64, copy=True)
        for i, (b0, b1, b2, _, a1, a2) in enumerate(self.sos):
            z1, z2 = self._z[i, 0].copy(), self._z[i, 1].copy()
            for n in range(y.shape[0]):
                xn = y[n].copy()
                yn = b0 * xn + z1
                z1 = b1 * xn - a1 * yn + z2
                z2 = b2 * xn - a2 * yn
                y[n] = yn
            self._z[i, 0], self._z[i, 1] = z1, z2
        return y


class Preprocessor:
    """Band-pass + mains notch for a multichannel stream, robust to NaN/inf samples.

    Non-finite samples are replaced by the channel's last finite value before filtering, so one
    bad packet cannot poison the IIR state forever; the mask of replaced samples is returned so
    the window that contains them can be rejected.
    """

    def __init__(self, fs: float, n_channels: int, low_hz: float = 1.0, high_hz: float = 45.0,
                 order: int = 4, notch_hz: float = 50.0, notch_q: float = 30.0):
        sections = [bandpass_sos(fs, low_hz, high_hz, order)]
        if notch_hz > 0:
            sections.append(biquad_notch(fs, notch_hz, notch_q)[None, :])
        self.filter = SosFilter(np.vstack(sections), n_channels)
        self.n_channels = n_channels
        self._last_finite: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the stream (after a gap): next chunk starts from a fresh steady state."""
        self._last_finite = None
        self.filter.reset()

    def process(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (filtered samples, boolean mask of samples that were non-finite)."""
        x = np.array(data, dtype=np.float64, copy=True)
        bad = ~np.isfinite(x)
        if bad.any():
            for c in np.flatnonzero(bad.any(axis=0)):
                column = x[:, c]
                good = np.flatnonzero(~bad[:, c])
                fill = self._last_finite[c] if self._last_finite is not None else 0.0
                if good.size:
                    # Hold the previous finite value forward over each bad run.
                    index = np.maximum.accumulate(np.where(~bad[:, c], np.arange(len(column)), -1))
                    held = np.where(index >= 0, column[np.maximum(index, 0)], fill)
                    column[:] = np.where(bad[:, c], held, column)
                else:
                    column[:] = fill
        if self._last_finite is None:
            self._last_finite = x[0].copy()
            self.filter.reset(initial=x[0])
        self._last_finite = x[-1].copy()
        return self.filter.process(x), bad
