"""The numpy features match librosa (the model's training code path) on real espeak-ng speech."""

from __future__ import annotations

import numpy as np
import pytest

from edge.voice.features import FEATURE_SIZE, GROUPS, FeatureExtractor
from tests.speech import speech_clips

librosa = pytest.importorskip("librosa")

# Tolerances per feature group (documented in edge/voice/features.py).
TOLERANCE = {"mfcc": 1e-3, "chroma": 1e-4, "mel": 1e-5, "zcr": 1e-6}


def librosa_features(x: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """audioanalytics.features.extract_feature, on an array instead of a file."""
    stft = np.abs(librosa.stft(x))
    mfcc = np.mean(librosa.feature.mfcc(y=x, sr=sr, n_mfcc=40).T, axis=0)
    chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sr).T, axis=0)
    mel = np.mean(librosa.feature.melspectrogram(y=x, sr=sr).T, axis=0)
    zcr = np.mean(librosa.feature.zero_crossing_rate(x).T, axis=0)
    return np.hstack([mfcc, chroma, mel, zcr]), float(librosa.estimate_tuning(S=stft, sr=sr))


def group_errors(ours: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    errors = {}
    for name, part in GROUPS.items():
        diff = np.abs(ours[part].astype(np.float64) - ref[part])
        if name == "mel":
            diff = diff / np.maximum(np.abs(ref[part]), 1e-12)
        errors[name] = float(diff.max())
    return errors


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return speech_clips(tmp_path_factory.mktemp("speech"))


def test_features_match_librosa_on_speech(clips):
    extractor = FeatureExtractor()
    worst = {name: 0.0 for name in GROUPS}
    checked = 0
    for name, samples, rate in clips:
        assert rate == 22050
        window = int(2.5 * rate)
        segments = [samples, samples[4000:4000 + window], samples[-window:]]
        for segment in segments:
            ours = extractor.extract(segment)
            ref, tuning = librosa_features(segment, rate)
            assert ours.shape == (FEATURE_SIZE,) and ours.dtype == np.float32
            assert extractor.last_tuning == pytest.approx(tuning, abs=1e-9), name
            for group, error in group_errors(ours, ref).items():
                worst[group] = max(worst[group], error)
                assert error <= TOLERANCE[group], (name, group, error)
            checked += 1
    print(f"max errors over {checked} segments: {worst}")
    assert checked == 3 * len(clips)


def test_per_frame_groups_match_librosa(clips):
    """Not only the means: every frame of every group agrees."""
    name, samples, rate = clips[0]
    ours = FeatureExtractor().frames(samples)
    stft = np.abs(librosa.stft(samples))
    np.testing.assert_allclose(ours["mel"], librosa.feature.melspectrogram(y=samples, sr=rate),
                               rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(ours["mfcc"], librosa.feature.mfcc(y=samples, sr=rate, n_mfcc=40), atol=2e-3)
    np.testing.assert_allclose(ours["chroma"], librosa.feature.chroma_stft(S=stft, sr=rate), atol=1e-4)
    np.testing.assert_allclose(ours["zcr"], librosa.feature.zero_crossing_rate(samples), atol=1e-6)


def test_tuning_estimate_matters_and_is_reproduced(clips):
    """chroma_stft estimates tuning by default; ignoring it would move chroma well past tolerance."""
    estimated, fixed = FeatureExtractor(), FeatureExtractor(tuning=0.0)
    shifts = []
    for _, samples, _ in clips:
        a, b = estimated.extract(samples), fixed.extract(samples)
        shifts.append(float(np.abs(a[GROUPS["chroma"]] - b[GROUPS["chroma"]]).max()))
    assert max(shifts) > 0.03  # 300x the chroma tolerance


def test_reflect_padding_matches_old_librosa(clips):
    _, samples, rate = clips[1]
    ours = FeatureExtractor(pad_mode="reflect").extract(samples[:int(2.5 * rate)])
    stft = np.abs(librosa.stft(samples[:int(2.5 * rate)], pad_mode="reflect"))
    mel = np.mean(librosa.feature.melspectrogram(S=stft ** 2, sr=rate), axis=1)
    np.testing.assert_allclose(ours[GROUPS["mel"]], mel, rtol=1e-3)


def test_digital_silence_gives_finite_features():
    vector = FeatureExtractor().extract(np.zeros(22050, dtype=np.float32))
    assert np.all(np.isfinite(vector))
    assert np.all(vector[GROUPS["chroma"]] == 0)


def test_bad_pad_mode_is_a_clear_error():
    from edge.errors import EdgeError
    with pytest.raises(EdgeError, match="voice.pad_mode"):
        FeatureExtractor(pad_mode="wrap")
