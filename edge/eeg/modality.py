"""EEG: an LSL stream (a Muse through muselsl/BlueMuse/Mind Monitor, or the simulator) and the EEG analyzer."""

from __future__ import annotations

from typing import Any

from ..modalities import Modality
from ..smoothing import SmoothingConfig


def _open(config):
    from ..sources.lsl import LSLSource
    from .analyzer import EEGAnalyzer

    source = LSLSource(config.lsl)
    return source, EEGAnalyzer.from_config(config, source=source)


def _smoothing(config) -> tuple[SmoothingConfig, bool]:
    """Half weight per window (`eeg.hop_s` apart), as the index was smoothed before; a calibrated model's
    label switches as soon as the smoothed probabilities say so."""
    return SmoothingConfig(alpha=0.5, alpha_interval_s=config.eeg.hop_s, min_confidence=0.0, dwell_s=0.0), False


def _health(worker: dict[str, Any]) -> dict[str, Any]:
    source = worker.pop("source")
    worker["chunks"] = worker.pop("items")
    worker["quality"] = worker.get("electrodes")
    return {**worker, "source_state": source.get("state"), "source_reconnects": source.get("reconnects", 0)}


SPEC = Modality(
    name="eeg",
    enabled=lambda config: config.eeg.enabled,
    open=_open,
    smoothing=_smoothing,
    event_interval_s=lambda config: config.eeg.event_interval_s,
    quiet_s=lambda config: config.lsl.backoff_max_s + 4 * config.lsl.resolve_timeout_s,  # resolve, open, clock, info
    health=_health,
)
