"""The one versioned event every modality publishes (face, voice, eeg).

Schema `emotion-edge/event/1` (documented in README, checked by EVENT_JSON_SCHEMA):

  schema        "emotion-edge/event/1"
  seq           per-process sequence number, increasing; lets a consumer spot gaps and order
  device_id     the device's configured id
  modality      "face" | "voice" | "eeg"
  kind          "emotion" (label changed or periodic state), "track_start", "track_end"
  track_id      stable id of the face track, or the source name for voice / eeg
  label         winning label, or null when nothing is classified (track_end, index-only eeg)
  confidence    smoothed probability of `label` in [0, 1]
  probabilities smoothed per-class probabilities {label: p}
  valence       [-1, 1], circumplex mapping of the probabilities (edge.affect) or an eeg index
  arousal       [-1, 1], likewise
  timestamp     UTC time the input was captured, ISO 8601 with milliseconds and "Z"
  model         {"id": model id, "sha256": artifact hash, "estimator": "classifier" | "index"}
  latency_ms    capture-to-event processing time
  extra         modality-specific details (face box, eeg signal quality, ...)
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

SCHEMA = "emotion-edge/event/1"
MODALITIES = ("face", "voice", "eeg")
KINDS = ("emotion", "track_start", "track_end")

_sequence = itertools.count(1)


def utc_timestamp(epoch_seconds: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if epoch_seconds is None else epoch_seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Event:
    device_id: str
    modality: str
    kind: str
    track_id: str
    label: str | None
    confidence: float
    probabilities: dict[str, float]
    valence: float
    arousal: float
    timestamp: str
    model: dict[str, str]
    latency_ms: float
    extra: dict[str, Any] = field(default_factory=dict)
    seq: int = field(default_factory=lambda: next(_sequence))
    schema: str = SCHEMA

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, not {self.modality!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["confidence"] = round(float(self.confidence), 4)
        data["valence"] = round(float(self.valence), 4)
        data["arousal"] = round(float(self.arousal), 4)
        data["latency_ms"] = round(float(self.latency_ms), 2)
        data["probabilities"] = {k: round(float(v), 4) for k, v in self.probabilities.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


EVENT_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "emotion-edge event v1",
    "type": "object",
    "required": ["schema", "seq", "device_id", "modality", "kind", "track_id", "label", "confidence",
                 "probabilities", "valence", "arousal", "timestamp", "model", "latency_ms", "extra"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA},
        "seq": {"type": "integer", "minimum": 1},
        "device_id": {"type": "string", "minLength": 1},
        "modality": {"enum": list(MODALITIES)},
        "kind": {"enum": list(KINDS)},
        "track_id": {"type": "string"},
        "label": {"type": ["string", "null"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "probabilities": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
        "valence": {"type": "number", "minimum": -1, "maximum": 1},
        "arousal": {"type": "number", "minimum": -1, "maximum": 1},
        "timestamp": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"},
        "model": {
            "type": "object",
            "required": ["id", "sha256", "estimator"],
            "properties": {"id": {"type": "string"}, "sha256": {"type": "string"},
                           "estimator": {"enum": ["classifier", "index"]}},
        },
        "latency_ms": {"type": "number", "minimum": 0},
        "extra": {"type": "object"},
    },
}
