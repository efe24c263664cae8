"""Voice activity: silence and noise are not speech, espeak speech is; health problems are named."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import EdgeError
from edge.voice.vad import VadConfig, VoiceActivityDetector
from tests.speech import speech_clips

RATE = 22050
WINDOW = int(2.5 * RATE)


def windows(signal: np.ndarray, hop: int = RATE):
    for start in range(0, len(signal) - WINDOW + 1, hop):
        yield signal[start:start + WINDOW]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return speech_clips(tmp_path_factory.mktemp("speech"), count=6)


def test_silence_and_noise_yield_no_speech_windows():
    rng = np.random.default_rng(0)
    t = np.arange(WINDOW) / RATE
    backgrounds = {
        "digital silence": np.zeros(WINDOW),
        "quiet hiss": rng.normal(0, 1e-4, WINDOW),
        "room noise": rng.normal(0, 0.003, WINDOW),
        "loud white noise": rng.normal(0, 0.1, WINDOW),
        "mains hum": 0.05 * np.sin(2 * np.pi * 50 * t) + 0.02 * np.sin(2 * np.pi * 150 * t),
    }
    for name, background in backgrounds.items():
        vad = VoiceActivityDetector()
        for _ in range(4):
            result = vad.analyse(background.astype(np.float32), RATE)
            assert not result.is_speech, name
            assert result.speech_fraction < 0.05, (name, result.speech_fraction)


def test_speech_yields_speech_windows_also_in_noise(clips):
    rng = np.random.default_rng(1)
    for name, samples, rate in clips:
        for noise in (0.0, 0.005):
            vad = VoiceActivityDetector()
            signal = samples + rng.normal(0, noise, len(samples)) if noise else samples
            results = [vad.analyse(w, rate) for w in windows(signal)]
            assert results and all(r.is_speech for r in results), (name, noise, [r.speech_fraction for r in results])


def test_speech_then_silence(clips):
    _, samples, rate = clips[0]
    vad = VoiceActivityDetector()
    signal = np.concatenate([samples[:3 * rate], np.zeros(5 * rate, dtype=np.float32)])
    verdicts = [vad.analyse(w, rate) for w in windows(signal)]
    assert verdicts[0].is_speech
    assert not verdicts[-1].is_speech and "silence" in verdicts[-1].problems


def test_clipping_and_dc_are_reported(clips):
    _, samples, rate = clips[1]
    window = samples[:WINDOW]
    vad = VoiceActivityDetector()
    clipped = np.clip(window * 20, -1, 1)
    result = vad.analyse(clipped, rate)
    assert "clipping" in result.problems and not result.is_speech
    assert result.clipped_fraction > 0.01

    offset = vad.analyse(window + 0.2, rate)
    assert "dc_offset" in offset.problems
    assert offset.dc_offset == pytest.approx(0.2 + float(np.mean(window)), abs=1e-4)
    # DC is measured and removed before judging: the window is still speech.
    assert offset.is_speech
    assert offset.level_dbfs == pytest.approx(vad.analyse(window, rate).level_dbfs, abs=0.1)

    silent = vad.analyse(np.zeros(WINDOW, dtype=np.float32), rate)
    assert silent.problems == ["silence"]


def test_config_errors_name_the_key():
    with pytest.raises(EdgeError, match="vad.min_speech_fraction"):
        VadConfig(min_speech_fraction=1.5).validate()
    with pytest.raises(EdgeError, match="vad.hangover_frames"):
        VoiceActivityDetector(VadConfig(hangover_frames=-1))
    VadConfig().validate()
