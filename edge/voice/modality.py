"""Voice: a microphone (PortAudio) or an audio file, and the voice analyzer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import EdgeError
from ..modalities import Modality
from ..smoothing import SmoothingConfig


def _open(config):
    from ..backends import open_model
    from ..sources.audio import AudioFileSource, MicrophoneSource
    from .analyzer import VoiceAnalyzer

    voice = config.voice
    # the source first: a missing or unplayable file is named before a model loads
    source = AudioFileSource(config.audio_file) if voice.source == "file" else MicrophoneSource(config.microphone)
    model = open_model(Path(voice.models).expanduser() / voice.model, voice.backend, voice.threads,
                       providers=voice.providers, cache_dir=config.device.cache_path)
    if model.manifest.data["task"] != "voice_emotion":
        raise EdgeError(f"voice.model = {voice.model!r} is a {model.manifest.data['task']} model, not voice_emotion")
    return source, VoiceAnalyzer(model, config=voice, vad_config=config.vad)


def _smoothing(config) -> tuple[SmoothingConfig, bool]:
    """One window per hop; the label is released to "uncertain" as soon as the analyzer stops naming one."""
    return SmoothingConfig(alpha=config.voice.smoothing_alpha, alpha_interval_s=0.0, min_confidence=0.0,
                           dwell_s=0.0), True


def _quiet_s(config) -> float:
    microphone = config.microphone
    return microphone.backoff_max_s + microphone.stall_timeout_s if config.voice.source == "microphone" else 0.0


def _health(worker: dict[str, Any]) -> dict[str, Any]:
    source = worker.pop("source")
    worker["windows_per_s"] = worker.pop("rate_per_s")
    worker.pop("items")
    return {**worker, "source_state": source.get("state"), "source_reconnects": source.get("reconnects", 0),
            "dropped": source.get("dropped", 0)}


SPEC = Modality(
    name="voice",
    enabled=lambda config: config.voice.enabled,
    open=_open,
    smoothing=_smoothing,
    quiet_s=_quiet_s,
    health=_health,
)
