"""Welch PSD, band power, differential entropy, asymmetry, windows and quality checks."""

import math

import numpy as np
import pytest
from scipy import signal

from edge.eeg.config import EEGConfig
from edge.eeg.features import (
    BANDS,
    band_powers,
    differential_entropy,
    extract_features,
    welch_psd,
)
from edge.eeg.filters import Preprocessor
from edge.eeg.quality import assess
from edge.eeg.simulator import LABELS, MuseSignal, SimulatorConfig
from edge.eeg.windows import SlidingWindow
from edge.errors import EdgeError

FS = 256.0
CH = ("TP9", "AF7", "AF8", "TP10")


def test_welch_equals_scipy_welch():
    x = np.random.default_rng(1).standard_normal((1024, 3)) * 7
    freqs, psd = welch_psd(x, FS, segment=256)
    f_ref, p_ref = signal.welch(x, FS, window="hann", nperseg=256, noverlap=128, detrend="constant", axis=0)
    np.testing.assert_allclose(freqs, f_ref)
    np.testing.assert_allclose(psd, p_ref, rtol=1e-10, atol=1e-12)


def test_band_power_of_a_sine_is_its_variance_in_the_right_band():
    t = np.arange(1024) / FS
    x = (20.0 * np.sin(2 * np.pi * 10.0 * t))[:, None]  # variance 200 uV^2, alpha band
    power = band_powers(*welch_psd(x, FS))[0]
    named = dict(zip(BANDS, power))
    assert named["alpha"] == pytest.approx(200.0, rel=0.02)
    assert max(named["delta"], named["theta"], named["beta"], named["gamma"]) < 0.01 * named["alpha"]


def test_gaussian_de_from_band_power_matches_band_filtered_variance():
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(256 * 60) * 10
    alpha_only = signal.sosfiltfilt(signal.butter(8, [8, 13], "bandpass", fs=FS, output="sos"), noise)
    power = band_powers(*welch_psd(noise[:, None], FS))  # from the PSD of the broadband signal
    de_psd = differential_entropy(power)[0, list(BANDS).index("alpha")]
    de_direct = 0.5 * math.log(2 * math.pi * math.e * np.var(alpha_only))
    assert de_psd == pytest.approx(de_direct, abs=0.1)


def test_asymmetry_sign_and_size_follow_the_alpha_ratio():
    t = np.arange(1024) / FS
    rng = np.random.default_rng(3)
    base = lambda amp: amp * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6)) + rng.standard_normal(1024)
    window = np.column_stack([base(10), base(10), base(20), base(10)])  # AF8 alpha 4x the power of AF7
    feats = extract_features(window, FS, CH)
    assert feats.alpha_asymmetry == pytest.approx(math.log(4.0), abs=0.1)
    assert feats.vector("de").shape == (20,) and len(feats.names("both")) == 40
    swapped = extract_features(window[:, [0, 2, 1, 3]], FS, CH)
    assert swapped.alpha_asymmetry == pytest.approx(-feats.alpha_asymmetry)


def test_features_need_the_frontal_channels():
    with pytest.raises(EdgeError, match="AF7"):
        extract_features(np.zeros((1024, 2)), FS, ("TP9", "TP10"))


def test_sliding_window_is_independent_of_chunking():
    rng = np.random.default_rng(4)
    n = 5000
    times, data = np.arange(n) / FS, rng.standard_normal((n, 2))
    bad = np.zeros((n, 2), dtype=bool)
    one = SlidingWindow(2, 1024, 128).push(times, data, data, bad)
    win, pieces, i = SlidingWindow(2, 1024, 128), [], 0
    while i < n:
        size = int(rng.integers(1, 30))
        pieces += win.push(times[i:i + size], data[i:i + size], data[i:i + size], bad[i:i + size])
        i += size
    assert len(one) == len(pieces) == (n - 1024) // 128 + 1
    for a, b in zip(one, pieces):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[2], b[2])
    assert one[0][0][-1] == times[1023] and one[1][0][-1] == times[1023 + 128]


def _window(**sim):
    sig = MuseSignal(SimulatorConfig(seed=5, **sim))
    raw = sig.next(int(FS * 8))[:, :4]
    filtered, bad = Preprocessor(FS, 4).process(raw)
    raw, filtered, bad = raw[-1024:], filtered[-1024:], bad[-1024:]
    feats = extract_features(filtered, FS, CH)
    return raw, filtered, bad, feats


def test_clean_signal_passes_quality_checks():
    raw, filtered, bad, _ = _window(blinks_per_min=0)
    a = assess(raw, filtered, bad, EEGConfig(), FS)
    assert not a.rejected, a.reasons
    assert all(q.status == "ok" and q.score > 0.9 for q in a.channels.values())


def test_flat_required_channel_rejects_and_flat_temporal_only_reports():
    cfg = EEGConfig()
    raw, filtered, bad, _ = _window(blinks_per_min=0, flat_channels=("AF8", "TP10"))
    a = assess(raw, filtered, bad, cfg, FS)
    assert a.channels["AF8"].status == "flat" and a.channels["TP10"].status == "flat"
    assert a.rejected and a.reasons == ["flat:AF8"]


def test_saturation_noise_blink_and_jaw_are_detected():
    cfg = EEGConfig()
    raw, filtered, bad, _ = _window(blinks_per_min=0)
    clipped = raw.copy()
    clipped[::10, 1] = 1500.0  # 10% of AF7 samples at the amplifier rail
    assert assess(clipped, filtered, bad, cfg).reason == "saturated:AF7"
    noisy = filtered.copy()
    noisy[:, 2] += np.random.default_rng(6).standard_normal(1024) * 120
    a = assess(raw, noisy, bad, cfg)
    assert a.channels["AF8"].status == "noisy" and a.channels["AF8"].score < 0.5 and a.rejected
    _, f_blink, b_blink, _ = _window(blinks_per_min=600)  # a blink every ~0.1 s
    raw_b = raw
    assert any(r.startswith("blink:") for r in assess(raw_b, f_blink, b_blink, cfg, FS).reasons)
    _, f_jaw, b_jaw, _ = _window(blinks_per_min=0, jaw_per_min=300)
    reasons = assess(raw, f_jaw, b_jaw, cfg, FS).reasons
    assert any(r.startswith("jaw_clench:") for r in reasons), reasons


def test_non_finite_samples_mark_the_channel_invalid():
    raw, filtered, bad, _ = _window(blinks_per_min=0)
    bad = bad.copy()
    bad[10:20, 1] = True
    a = assess(raw, filtered, bad, EEGConfig(), FS)
    assert a.channels["AF7"].status == "invalid" and a.reason == "invalid:AF7"


def test_simulator_labels_are_muse_like():
    assert LABELS == ("TP9", "AF7", "AF8", "TP10", "Right AUX")
