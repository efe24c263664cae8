"""The modality registry: adding a modality is one package with a `modality.py` plus one line here.

A modality's `modality.py` defines `SPEC`, a `Modality`: how to tell it is enabled, how to open its source
and analyzer from the configuration, how its smoothing and events are tuned and how its health reads.
Everything else (the worker loop, the smoother, the event policy, fusion, sinks) is shared. Specs are
imported only when used, so a device without a camera never imports OpenCV.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from .smoothing import SmoothingConfig

# name -> module defining SPEC; the order is the order of workers, topics and health.
REGISTRY: dict[str, str] = {
    "face": "edge.face.modality",
    "voice": "edge.voice.modality",
    "eeg": "edge.eeg.modality",
}


@dataclass(frozen=True)
class Modality:
    name: str
    enabled: Callable[[Any], bool]  # (AppConfig) -> bool
    open: Callable[[Any], tuple[Any, Any]]  # (AppConfig) -> (source, analyzer); EdgeError for unusable input
    smoothing: Callable[[Any], tuple[SmoothingConfig, bool]]  # (AppConfig) -> (config, release label to None)
    event_interval_s: Callable[[Any], float] = lambda config: 0.0  # periodic events (0 = on label change only)
    state_interval_s: Callable[[Any], float] = lambda config: 0.0  # state refresh (0 = every observation)
    quiet_s: Callable[[Any], float] = lambda config: 0.0  # the source's longest legitimate silence
    health: Callable[[dict[str, Any]], dict[str, Any]] = lambda worker_health: worker_health


def spec(name: str) -> Modality:
    return importlib.import_module(REGISTRY[name]).SPEC


def enabled(config) -> list[Modality]:
    return [spec(name) for name in REGISTRY if getattr(config, name).enabled]


def published(config) -> list[str]:
    """Every modality whose state and events this configuration publishes, fusion included."""
    names = [name for name in REGISTRY if getattr(config, name).enabled]
    if fuses(config):
        names.append("fused")
    return names


def fuses(config) -> bool:
    """Fusion runs when it is enabled and there are at least two modalities to fuse."""
    fusion = getattr(config, "fusion", None)
    return fusion is not None and fusion.enabled and sum(getattr(config, name).enabled for name in REGISTRY) >= 2
