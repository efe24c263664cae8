"""Shared fixtures: the real face export, run once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("EMOTION_EDGE_CACHE", ROOT / ".cache"))


def run_export(*args: str, cache: Path = CACHE) -> subprocess.CompletedProcess:
    """The real `emotion-export` command, as a user runs it."""
    env = dict(os.environ, EMOTION_EDGE_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "export.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=900)


@pytest.fixture(scope="session")
def face_models(tmp_path_factory) -> Path:
    """A model directory produced by `emotion-export face` with the pretrained defaults."""
    out = tmp_path_factory.mktemp("models") / "face"
    result = run_export("face", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def voice_models(tmp_path_factory) -> Path:
    """A model directory produced by `emotion-export voice` (the pinned RAVDESS model)."""
    from tests.speech import have_espeak

    if not have_espeak():
        pytest.skip("espeak-ng is not installed")
    out = tmp_path_factory.mktemp("models") / "voice"
    result = run_export("voice", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "voice.int8.tflite" in result.stdout
    return out
