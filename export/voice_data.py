"""Real speech for voice calibration and validation: espeak-ng clips, windowed like the device.

espeak-ng is a formant synthesiser, so its speech is real audio with real spectra, prosody and
voice differences, but it carries no acted emotion: it is used to measure how closely each
artifact follows the float model, not how well the model recognises emotion. Clips vary voice,
speaking rate and pitch; copies with a gain change and added noise cover level and SNR. Data is
split by voice, so validation never sees a voice that calibrated the quantizer.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.voice.features import MODEL_RATE, FeatureExtractor
from edge.voice.resample import resample

from .errors import ExportError

log = logging.getLogger(__name__)

SENTENCES = (
    "The quick brown fox jumps over the lazy dog while the children laugh in the garden.",
    "I cannot believe you did that again, it is absolutely wonderful news for everyone here.",
    "Please stay calm, everything will be fine, we simply need to wait a little longer.",
    "Somebody left the door open last night and now the whole house is freezing cold.",
)
CALIBRATION_VOICES = ("en-us", "en", "de", "fr", "en-us+f3", "en+m3")
VALIDATION_VOICES = ("es", "it", "en-us+f2", "en+m7", "nl")


@dataclass
class SpeechConfig:
    """Which espeak-ng speech to synthesise and how to cut it into windows."""

    # Speaking rates in words per minute.
    rates: tuple[int, ...] = (130, 185)
    # espeak-ng pitch values (0-99, 50 is the voice's default).
    pitches: tuple[int, ...] = (35, 65)
    # How many of SENTENCES each (voice, rate, pitch) speaks.
    sentences: int = 3
    # Analysis window and hop in seconds (the device's audio defaults).
    window_s: float = 2.5
    hop_s: float = 1.0
    # Add a copy of every window at this gain (1 = no copy).
    gain: float = 0.3
    # Add a copy of every window with white noise at this SNR in dB (None = no copy).
    noise_snr_db: float | None = 20.0
    seed: int = 0

    def validate(self) -> None:
        if not self.rates or any(not 80 <= r <= 450 for r in self.rates):
            raise ExportError("speech.rates must be words per minute between 80 and 450")
        if not self.pitches or any(not 0 <= p <= 99 for p in self.pitches):
            raise ExportError("speech.pitches must be espeak-ng pitches between 0 and 99")
        if not 1 <= self.sentences <= len(SENTENCES):
            raise ExportError(f"speech.sentences must be between 1 and {len(SENTENCES)}")
        if not 0.1 <= self.window_s <= 30 or not 0 < self.hop_s <= self.window_s:
            raise ExportError("speech.window_s must be 0.1-30 s and speech.hop_s in (0, window_s]")
        if not 0 < self.gain <= 1:
            raise ExportError("speech.gain must be in (0, 1]")


def synthesize(text: str, voice: str, wpm: int = 150, pitch: int = 50, rate: int = MODEL_RATE) -> np.ndarray:
    """espeak-ng speech as float32 mono at `rate`."""
    import soundfile

    if shutil.which("espeak-ng") is None:
        raise ExportError("espeak-ng is not installed; install it (apt-get install espeak-ng) to synthesise "
                          "calibration speech, or give your own labelled recordings")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        result = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(path), text],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0 or not path.is_file():
            raise ExportError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()[:200]}")
        samples, source_rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    if samples.ndim != 1:
        samples = samples.mean(axis=1)
    return resample(samples, source_rate, rate) if source_rate != rate else samples


def cut_windows(samples: np.ndarray, rate: int, window_s: float, hop_s: float) -> list[np.ndarray]:
    """Overlapping windows as the device's audio source delivers them (a short clip gives one)."""
    length, hop = int(round(window_s * rate)), int(round(hop_s * rate))
    if len(samples) <= length:
        return [samples]
    return [samples[start:start + length] for start in range(0, len(samples) - length + 1, hop)]


def variants(window: np.ndarray, config: SpeechConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """The window itself plus its quieter and its noisy copy."""
    out = [window]
    if config.gain < 1:
        out.append(window * np.float32(config.gain))
    if config.noise_snr_db is not None:
        power = float(np.mean(window.astype(np.float64) ** 2))
        noise = rng.standard_normal(len(window)) * np.sqrt(power / 10 ** (config.noise_snr_db / 10))
        out.append(np.clip(window + noise, -1, 1).astype(np.float32))
    return out


@dataclass
class SpeechSet:
    """Feature vectors of speech windows and the voice each came from."""

    features: np.ndarray          # (n, 181) float32
    voices: list[str]
    windows: list[np.ndarray]     # the audio, for frontends other than the 181 features

    def __len__(self) -> int:
        return len(self.voices)


def speech_set(voices: tuple[str, ...], config: SpeechConfig | None = None, with_features: bool = True) -> SpeechSet:
    """Windows (and their 181 features) over voices x rates x pitches x sentences, with variants."""
    config = config or SpeechConfig()
    config.validate()
    rng = np.random.default_rng(config.seed)
    extractor = FeatureExtractor()
    windows, names = [], []
    for voice in voices:
        for wpm in config.rates:
            for pitch in config.pitches:
                for text in SENTENCES[:config.sentences]:
                    clip = synthesize(text, voice, wpm, pitch)
                    for window in cut_windows(clip, MODEL_RATE, config.window_s, config.hop_s):
                        for variant in variants(window, config, rng):
                            windows.append(variant)
                            names.append(voice)
    features = (np.stack([extractor.extract(w) for w in windows]) if with_features
                else np.empty((0, 181), np.float32))
    log.info("synthesised %d speech windows from %d voices", len(windows), len(voices))
    return SpeechSet(features=features, voices=names, windows=windows)
