"""Real speech clips for voice tests, synthesised with espeak-ng (22050 Hz mono WAV)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

SENTENCES = (
    "The quick brown fox jumps over the lazy dog while the children laugh in the garden.",
    "I cannot believe you did that again, it is absolutely wonderful news for everyone here.",
    "Please stay calm, everything will be fine, we simply need to wait a little longer.",
)

# (voice, words per minute): several voices and speaking rates.
VOICES = (
    ("en-us", 140), ("en-us", 220), ("en", 110), ("en", 175), ("de", 150),
    ("fr", 160), ("es", 190), ("en-us+f3", 150), ("en+m7", 130), ("en-us", 170),
)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(path: Path, text: str, voice: str = "en-us", wpm: int = 150) -> tuple[np.ndarray, int]:
    """Write espeak-ng speech to `path` and return (float32 samples, rate)."""
    if not have_espeak():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text],
                   check=True, capture_output=True, timeout=60)
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    return samples, rate


def speech_clips(directory: Path, count: int = len(VOICES)) -> list[tuple[str, np.ndarray, int]]:
    """`count` clips over the voice/rate table, cycling through the sentences."""
    clips = []
    for index, (voice, wpm) in enumerate(VOICES[:count]):
        path = directory / f"speech_{index}_{voice.replace('+', '_')}_{wpm}.wav"
        samples, rate = speak(path, SENTENCES[index % len(SENTENCES)], voice, wpm)
        clips.append((f"{voice}@{wpm}", samples, rate))
    return clips
