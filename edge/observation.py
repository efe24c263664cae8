"""What every analyzer produces and every consumer reads: one estimate of one subject at one moment.

An analyzer (face, voice, eeg) turns each source item (a frame, an audio window, an EEG chunk) into
observations: one per subject per window or frame, not only when a label changes. Fusion produces
observations too (modality "fused"). Downstream, one smoother, one event policy and every sink read
only this type, so a new modality needs no change anywhere else.

No data is None, never 0: a face track with no emotion yet, an EEG window rejected for artefacts or
a headband still learning its wearer's baseline carry valence/arousal/confidence None, so a hub and
the fusion can tell "neutral" from "don't know".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

# A subject appears (a face track starts), is estimated (every frame or window), or is gone.
KINDS = ("start", "state", "end")


@dataclass(frozen=True)
class Observation:
    modality: str  # "face", "voice", "eeg", ... or "fused"
    subject: str  # the stream within the modality: a face track id, "room" for the microphone, the headband's stream
    timestamp: float  # capture time of the input, Unix seconds (sources convert their clocks, LSL included)
    kind: str = "state"
    label: str | None = None  # None: no label (no data, or not confident enough: "uncertain")
    probabilities: Mapping[str, float] | None = None  # per-class scores of a classifier; None for index estimators
    valence: float | None = None  # [-1, 1]; None = no data
    arousal: float | None = None  # [-1, 1]; None = no data
    confidence: float | None = None  # [0, 1]: how much to trust valence/arousal; None = no data
    quality: float | None = None  # [0, 1]: how good the input was (face size/score, speech SNR, EEG contact)
    estimator: str = "classifier"  # "classifier", "index", "prosody", "fusion", ...
    model: Mapping[str, str] = field(default_factory=dict)  # {"id": ..., "sha256": ...}
    latency_ms: float | None = None  # capture to observation
    extra: Mapping[str, Any] = field(default_factory=dict)  # modality details (face box, per-electrode quality, ...)
    received: float = field(default_factory=time.monotonic, compare=False)  # monotonic time the analyzer made it

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        for name in ("valence", "arousal", "confidence", "quality"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite or None, not {value!r}")

    @property
    def has_data(self) -> bool:
        return self.valence is not None and self.arousal is not None

    def with_(self, **changes: Any) -> "Observation":
        return replace(self, **changes)


def rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)
