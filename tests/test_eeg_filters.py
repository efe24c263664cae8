"""Streaming IIR filters against scipy.signal (scipy is used here only, never on the device)."""

import numpy as np
import pytest
from scipy import signal

from edge.eeg.filters import (
    Preprocessor,
    SosFilter,
    bandpass_sos,
    biquad_highpass,
    biquad_notch,
    butterworth_qs,
    frequency_response,
)
from edge.errors import EdgeError

FS = 256.0


@pytest.mark.parametrize("order", [2, 4, 6])
def test_bandpass_equals_scipy_butterworth(order):
    mine = bandpass_sos(FS, 1.0, 45.0, order)
    ref = np.vstack([signal.butter(order, 1.0, "highpass", fs=FS, output="sos"),
                     signal.butter(order, 45.0, "lowpass", fs=FS, output="sos")])
    freqs = np.linspace(0.05, 127.9, 2000)
    _, h_ref = signal.sosfreqz(ref, worN=freqs, fs=FS)
    h_mine = frequency_response(mine, freqs, FS)
    assert np.max(np.abs(np.abs(h_mine) - np.abs(h_ref))) < 1e-9
    # and the response we rely on: -3 dB at both edges, flat in between, strong rejection outside
    gain_db = lambda f: 20 * np.log10(np.abs(frequency_response(mine, [f], FS))[0])
    assert gain_db(1.0) == pytest.approx(-3.01, abs=0.02)
    assert gain_db(45.0) == pytest.approx(-3.01, abs=0.02)
    assert abs(gain_db(10.0)) < 0.1
    if order >= 4:
        assert gain_db(0.1) < -60 and gain_db(100.0) < -25


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_notch_equals_scipy_iirnotch(mains):
    b, a = signal.iirnotch(mains, 30.0, fs=FS)
    np.testing.assert_allclose(biquad_notch(FS, mains, 30.0), np.r_[b, a], atol=1e-12)
    h = np.abs(frequency_response(biquad_notch(FS, mains, 30.0), [mains, mains - 10, mains + 10], FS))
    assert h[0] < 1e-6 and h[1] > 0.99 and h[2] > 0.99


def test_streaming_chunks_equal_scipy_sosfilt_on_the_whole_signal():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 4)) * 20
    sos = np.vstack([bandpass_sos(FS, 1.0, 45.0, 4), biquad_notch(FS, 50.0, 30.0)])
    streaming = SosFilter(sos, 4)
    pieces, i = [], 0
    for size in rng.integers(1, 40, size=400):
        pieces.append(streaming.process(x[i:i + size]))
        i += size
        if i >= len(x):
            break
    ours = np.concatenate(pieces)
    np.testing.assert_allclose(ours, signal.sosfilt(sos, x, axis=0)[:len(ours)], rtol=1e-9, atol=1e-9)


def test_steady_state_reset_removes_the_dc_step():
    sos = bandpass_sos(FS, 1.0, 45.0, 4)
    filt = SosFilter(sos, 2)
    dc = np.array([750.0, -300.0])
    filt.reset(initial=dc)
    out = filt.process(np.tile(dc, (512, 1)))
    assert np.max(np.abs(out)) < 1e-6
    cold = SosFilter(sos, 2).process(np.tile(dc, (512, 1)))
    assert np.max(np.abs(cold)) > 100  # what the reset avoids


def test_preprocessor_holds_over_nan_and_inf_and_stays_finite():
    pre = Preprocessor(FS, 2, notch_hz=50.0)
    t = np.arange(1024) / FS
    clean = np.column_stack([10 * np.sin(2 * np.pi * 10 * t), 5 * np.sin(2 * np.pi * 20 * t)])
    dirty = clean.copy()
    dirty[100:110, 0] = np.nan
    dirty[300, 1] = np.inf
    dirty[301, 1] = -np.inf
    out, bad = pre.process(dirty[:512])
    out2, bad2 = pre.process(dirty[512:])
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(out2))
    assert bad[100:110, 0].all() and bad[300:302, 1].all() and bad.sum() == 12 and not bad2.any()
    # the filter was not poisoned: after the bad samples the output tracks the clean one again
    ref, _ = Preprocessor(FS, 2, notch_hz=50.0).process(clean)
    np.testing.assert_allclose(out2[256:], ref[768:], atol=0.05 * 10)


def test_design_errors_are_edge_errors():
    with pytest.raises(EdgeError, match="Nyquist"):
        biquad_highpass(FS, 200.0, 0.7)
    with pytest.raises(EdgeError, match="even"):
        butterworth_qs(3)
    with pytest.raises(EdgeError, match="below the high edge"):
        bandpass_sos(FS, 45.0, 1.0)
