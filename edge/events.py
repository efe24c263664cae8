"""The one versioned event every modality publishes (face, voice, eeg).

Schema `emotion-edge/event/1` (documented in README, checked by EVENT_JSON_SCHEMA):

  schema        "emotion-edge/event/1"
  id            "<device_id>-<run>-<seq>": unique per device across restarts; consumers drop duplicates by it
  run           this device's run number: a counter in device.data_dir raised at every start (0 = no runtime)
  seq           per-run sequence number from 1, increasing; spots gaps and orders events within a run
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

`id` and `run` were added to version 1 without a bump: the change is additive (old consumers ignore
them). A message delivered twice (at-least-once) repeats its `id`; `seq` alone repeats after every
restart, so de-duplicating by `seq` drops real events.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import EdgeError

SCHEMA = "emotion-edge/event/1"
MODALITIES = ("face", "voice", "eeg")
KINDS = ("emotion", "track_start", "track_end")

RUN_FILENAME = "run"

_sequence = itertools.count(1)
_run = 0


def current_run() -> int:
    return _run


def start_run(data_dir: Path) -> int:
    """Raise the run counter persisted in `data_dir` and use it for every event from now on.

    The new value is written to a temporary file, fsynced and renamed over the old one (then the
    directory is fsynced), so a power cut leaves either the old or the new number, never a torn
    one, and a number once used is never handed out again. The caller holds the data dir lock."""
    global _run
    path = Path(data_dir) / RUN_FILENAME
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = "0"
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeError(f"cannot read the run counter {path} ({exc}); fix its permissions or write into it a "
                        "number above the highest `run` this device has published") from None
    if not text.isdigit():
        raise EdgeError(f"run counter {path} holds {text[:20]!r}, not a number; write into it a number above the "
                        "highest `run` this device has published")
    run = int(text) + 1
    temporary = path.with_name(f".{RUN_FILENAME}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{run}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise EdgeError(f"cannot update the run counter {path} ({exc.strerror}); make {path.parent} writable by "
                        "this user") from None
    _run = run
    return run


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
    run: int = field(default_factory=current_run)
    id: str = field(init=False, default="")
    schema: str = SCHEMA

    def __post_init__(self):
        self.id = f"{self.device_id}-{self.run}-{self.seq}"
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
    "required": ["schema", "id", "run", "seq", "device_id", "modality", "kind", "track_id", "label", "confidence",
                 "probabilities", "valence", "arousal", "timestamp", "model", "latency_ms", "extra"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA},
        "id": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+-\d+-\d+$"},
        "run": {"type": "integer", "minimum": 0},
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
