"""What a hub may change on a running device: modality switches, the camera privacy switch, thresholds.

Each control has a key, a kind (switch or number), its range, and a getter and setter on the running
runtime. `apply(key, payload)` validates a command and applies it; anything out of range, of the wrong
kind or unknown is refused with a reason and changes nothing. Settings changed here live until the next
start: the config file stays the source of truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

SWITCH_ON, SWITCH_OFF = "ON", "OFF"


@dataclass(frozen=True)
class Control:
    key: str
    kind: str  # "switch" or "number"
    name: str  # what a hub shows
    get: Callable[[], Any]
    set: Callable[[Any], None]
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 0.01
    unit: str = ""


class Controls:
    def __init__(self, runtime):
        self.runtime = runtime
        self._controls: dict[str, Control] = {}
        for name, worker in runtime.workers.items():
            title = {"eeg": "EEG"}.get(name, name.capitalize())
            self._add(Control(f"{name}_enabled", "switch", f"{title} analysis",
                              get=lambda w=worker: not w.paused, set=lambda on, w=worker: w.pause(not on)))
        if "face" in runtime.workers:
            face = runtime.workers["face"]
            self._add(Control("camera_privacy", "switch", "Camera privacy",
                              get=lambda: face.paused, set=lambda on: face.pause(on)))
            detector = face.analyzer.detector
            self._add(Control("face_score_threshold", "number", "Face detector score",
                              get=lambda: detector.score_threshold, set=detector.set_score_threshold,
                              minimum=0.05, maximum=0.95))
            smoothing = runtime.config.smoothing
            self._add(Control("face_min_confidence", "number", "Face label minimum confidence",
                              get=lambda: smoothing.min_confidence,
                              set=lambda value: setattr(smoothing, "min_confidence", value)))
            self._add(Control("face_dwell_s", "number", "Face label dwell", unit="s",
                              get=lambda: smoothing.dwell_s, set=lambda value: setattr(smoothing, "dwell_s", value),
                              maximum=10.0, step=0.1))

    def _add(self, control: Control) -> None:
        self._controls[control.key] = control

    def __iter__(self):
        return iter(self._controls.values())

    def state(self) -> dict[str, Any]:
        """Every control's current value (switches as ON/OFF)."""
        return {key: _shown(control) for key, control in self._controls.items()}

    def apply(self, key: str, payload: str) -> str | None:
        """Apply one command; returns None when applied, else why it was refused."""
        control = self._controls.get(key)
        if control is None:
            return f"unknown control {key!r}; known: {', '.join(self._controls)}"
        text = payload.strip()
        if control.kind == "switch":
            if text.upper() not in (SWITCH_ON, SWITCH_OFF):
                return f"{key} takes {SWITCH_ON} or {SWITCH_OFF}, not {text[:40]!r}"
            control.set(text.upper() == SWITCH_ON)
            return None
        try:
            value = float(text)
        except ValueError:
            return f"{key} takes a number, not {text[:40]!r}"
        if not math.isfinite(value) or not control.minimum <= value <= control.maximum:
            return f"{key} must be between {control.minimum:g} and {control.maximum:g}, not {text[:40]!r}"
        control.set(value)
        return None


def _shown(control: Control) -> Any:
    value = control.get()
    if control.kind == "switch":
        return SWITCH_ON if value else SWITCH_OFF
    return round(float(value), 4)
