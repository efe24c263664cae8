"""The one versioned event every modality and the fusion publish (face, voice, eeg, fused).

Schema `emotion-edge/event/2` (documented in README, checked by EVENT_JSON_SCHEMA):

  schema        "emotion-edge/event/2"
  id            "<device_id>-<run>-<seq>": unique per device across restarts; consumers drop duplicates by it
  run           this device's run number: a counter in device.data_dir raised at every start (0 = no runtime)
  seq           per-run sequence number from 1, increasing; spots gaps and orders events within a run
  device_id     the device's configured id
  modality      "face" | "voice" | "eeg" | "fused"
  kind          "emotion" (label changed or periodic state), "track_start", "track_end"
  subject_id    whose affect: a face track id, "room" (voice), "wearer" (EEG headband, fused)
  track_id      the same as subject_id (kept for version 1 consumers)
  label         winning label, or null (nothing classified, or not confident enough: "uncertain")
  confidence    [0, 1] trust in valence/arousal (a classifier's smoothed probability of `label`), or null
  quality       [0, 1] quality of the input (face detector score, speech SNR, EEG contact), or null
  probabilities smoothed per-class probabilities {label: p}; {} for estimators without classes
  valence       [-1, 1], circumplex mapping of the probabilities (edge.affect), an index or the fusion; null = no data
  arousal       [-1, 1], likewise
  contributions fused events: {modality: {"weight", "valence", "arousal", "confidence", "age_s", "subject"}}
                (null entries for modalities without data); null for the other modalities
  timestamp     UTC time the input was captured, ISO 8601 with milliseconds and "Z"
  model         {"id": model id, "sha256": artifact hash, "estimator": "classifier" | "calibrated" | "index" |
                "prosody" | "fusion"}
  latency_ms    capture-to-event processing time
  extra         modality-specific details: face "box" [x, y, width, height] and "frame" [width, height] in
                pixels; eeg "electrodes" signal quality, "warming_up", "rejected"; ...

Changes from version 1: `subject_id`, `quality` and `contributions` are new; modality "fused" is new;
`valence`, `arousal` and `confidence` are null when there is no data (version 1 sent 0, which looked
like "neutral"). A message delivered twice (at-least-once) repeats its `id`; `seq` alone repeats after
every restart, so de-duplicating by `seq` drops real events.
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

SCHEMA = "emotion-edge/event/2"
MODALITIES = ("face", "voice", "eeg", "fused")
KINDS = ("emotion", "track_start", "track_end")
ESTIMATORS = ("classifier", "calibrated", "index", "prosody", "fusion")

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
    confidence: float | None
    probabilities: dict[str, float]
    valence: float | None
    arousal: float | None
    timestamp: str
    model: dict[str, str]
    latency_ms: float
    extra: dict[str, Any] = field(default_factory=dict)
    quality: float | None = None
    contributions: dict[str, Any] | None = None
    seq: int = field(default_factory=lambda: next(_sequence))
    run: int = field(default_factory=current_run)
    id: str = field(init=False, default="")
    subject_id: str = field(init=False, default="")
    schema: str = SCHEMA

    def __post_init__(self):
        self.id = f"{self.device_id}-{self.run}-{self.seq}"
        self.subject_id = self.track_id
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, not {self.modality!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("confidence", "valence", "arousal", "quality"):
            data[name] = _round(getattr(self, name))
        data["latency_ms"] = round(float(self.latency_ms), 2)
        data["probabilities"] = {k: round(float(v), 4) for k, v in self.probabilities.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


_UNIT = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_SIGNED = {"type": ["number", "null"], "minimum": -1, "maximum": 1}

EVENT_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "emotion-edge event v2",
    "type": "object",
    "required": ["schema", "id", "run", "seq", "device_id", "modality", "kind", "subject_id", "track_id", "label",
                 "confidence", "quality", "probabilities", "valence", "arousal", "contributions", "timestamp",
                 "model", "latency_ms", "extra"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA},
        "id": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+-\d+-\d+$"},
        "run": {"type": "integer", "minimum": 0},
        "seq": {"type": "integer", "minimum": 1},
        "device_id": {"type": "string", "minLength": 1},
        "modality": {"enum": list(MODALITIES)},
        "kind": {"enum": list(KINDS)},
        "subject_id": {"type": "string"},
        "track_id": {"type": "string"},
        "label": {"type": ["string", "null"]},
        "confidence": _UNIT,
        "quality": _UNIT,
        "contributions": {"type": ["object", "null"]},
        "probabilities": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
        "valence": _SIGNED,
        "arousal": _SIGNED,
        "timestamp": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"},
        "model": {
            "type": "object",
            "required": ["id", "sha256", "estimator"],
            "properties": {"id": {"type": "string"}, "sha256": {"type": "string"},
                           "estimator": {"enum": list(ESTIMATORS)}},
        },
        "latency_ms": {"type": "number", "minimum": 0},
        "extra": {"type": "object"},
    },
}
