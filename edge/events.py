"""The one versioned event every modality and the fusion publish (face, voice, eeg, fused).

Schema `emotion-edge/event/2` (documented in README, checked by EVENT_JSON_SCHEMA):

  schema        "emotion-edge/event/2"
  id            "<device_id>-<run>-<seq>": unique per device across restarts; consumers drop duplicates by it
  run           this device's run number: a counter in device.data_dir (run.0/run.1) raised at every start
                (0 = no runtime)
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
                "prosody" | "classifier+prosody" | "fusion"}
  latency_ms    capture-to-event processing time
  extra         modality-specific details: face "box" [x, y, width, height] and "frame" [width, height] in
                pixels; eeg "electrodes" signal quality, "warming_up", "rejected"; ...

Changes from version 1: `subject_id`, `quality` and `contributions` are new; modality "fused" is new;
`valence`, `arousal` and `confidence` are null when there is no data (version 1 sent 0, which looked
like "neutral"). A message delivered twice (at-least-once) repeats its `id`; `seq` alone repeats after
every restart, so de-duplicating by `seq` drops real events.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import zlib
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import EdgeError

SCHEMA = "emotion-edge/event/2"
MODALITIES = ("face", "voice", "eeg", "fused")
KINDS = ("emotion", "track_start", "track_end")
ESTIMATORS = ("classifier", "calibrated", "index", "prosody", "classifier+prosody", "fusion")

RUN_FILENAME = "run"  # the single counter file of earlier versions: still read (upgrades), never written
RUN_SLOTS = ("run.0", "run.1")

_sequence = itertools.count(1)
_run = 0


def current_run() -> int:
    return _run


def _slot_record(run: int) -> bytes:
    digits = f"{run:020d}"
    return f"{digits} {zlib.crc32(digits.encode()):08x}\n".encode("ascii")


SLOT_SIZE = len(_slot_record(0))


def read_slot(path: Path) -> int | None:
    """The run number in a counter slot, or None when the slot is missing, torn or garbage (bad checksum)."""
    try:
        data = path.read_bytes()[:SLOT_SIZE + 1]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _counter_error(f"cannot read the run counter slot {path}", path.parent, exc) from None
    digits = data[:20]
    if len(data) != SLOT_SIZE or not digits.isdigit() or data != _slot_record(int(digits)):
        return None
    return int(digits)


def _counter_error(what: str, directory: Path, exc: OSError) -> EdgeError:
    """A one-line EdgeError that names the real cause: a full disk, permissions, or another OS error."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return EdgeError(f"{what}: the disk holding {directory} is full ({exc.strerror}); free some space on it "
                         "(the run counter needs two 30-byte files once; later starts write them in place)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EdgeError(f"{what} ({exc.strerror}); make {directory} writable by this user")
    return EdgeError(f"{what} ({exc.strerror or exc}); check the disk holding {directory}")


def _write_slot(path: Path, run: int) -> None:
    """Overwrite an existing slot in place: pwrite + fsync into blocks the file already has, so a start on a
    full disk needs no new block. A power cut may tear this slot; the other one still holds the last run."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        if os.pwrite(fd, _slot_record(run), 0) != SLOT_SIZE:
            raise OSError(errno.EIO, "short write")
        if os.fstat(fd).st_size != SLOT_SIZE:
            os.ftruncate(fd, SLOT_SIZE)  # a longer garbage slot: shrinking needs no space
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_slot(path: Path, run: int) -> None:
    """A new slot, written whole to a temporary file and renamed into place (needs one block of space)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            if os.write(fd, _slot_record(run)) != SLOT_SIZE:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def start_run(data_dir: Path) -> int:
    """Raise the run counter persisted in `data_dir` and use it for every event from now on.

    The counter lives in two fixed-size slots (run.0, run.1: the number and its CRC-32), written alternately
    in place with pwrite + fsync; the highest valid slot counts. A torn write (power cut) spoils only the slot
    being written, which held the older number, so a number once used is never handed out again; and a
    restart on a full disk writes no new block (the slots are created, whole, at the first start). The
    single `run` file of earlier versions is still read, so an upgraded device continues its numbering.
    The caller holds the data dir lock."""
    global _run
    data_dir = Path(data_dir)
    slots = [data_dir / name for name in RUN_SLOTS]
    values = [read_slot(path) for path in slots]
    valid = [value for value in values if value is not None]
    if not valid and any(path.exists() for path in slots):
        raise EdgeError(f"the run counter slots {slots[0].name} and {slots[1].name} in {data_dir} are both unreadable "
                        f"(garbage or torn); delete them and write into {data_dir / RUN_FILENAME} a number above the "
                        "highest `run` this device has published")
    run = max(valid or [_read_legacy(data_dir / RUN_FILENAME)]) + 1
    try:
        missing = [path for path in slots if not path.exists()]
        for path in missing:
            _create_slot(path, run)
        if missing:
            _fsync_dir(data_dir)
        else:  # the slot holding the older (or no valid) number takes the new one
            ranks = [-1 if value is None else value for value in values]
            _write_slot(slots[0 if ranks[0] < ranks[1] else 1], run)
    except OSError as exc:
        raise _counter_error(f"cannot update the run counter in {data_dir}", data_dir, exc) from None
    _run = run
    return run


def _read_legacy(path: Path) -> int:
    """The number in the single `run` file of earlier versions, 0 when there is none."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    except UnicodeDecodeError:
        text = "?"
    except OSError as exc:
        raise _counter_error(f"cannot read the run counter {path}", path.parent, exc) from None
    if not text.isdigit():
        raise EdgeError(f"run counter {path} holds {text[:20]!r}, not a number; write into it a number above the "
                        "highest `run` this device has published")
    return int(text)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        """Field by field (dataclasses.asdict deep-copies, about 3x the cost at thousands of events a second)."""
        data = {name: getattr(self, name) for name in _FIELDS}
        for name in ("confidence", "valence", "arousal", "quality"):
            data[name] = _round(data[name])
        data["latency_ms"] = round(float(self.latency_ms), 2)
        data["probabilities"] = {k: round(float(v), 4) for k, v in self.probabilities.items()}
        data["model"], data["extra"] = dict(self.model), dict(self.extra)
        if self.contributions is not None:
            data["contributions"] = {k: dict(v) if isinstance(v, dict) else v for k, v in self.contributions.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


_FIELDS = tuple(f.name for f in fields(Event))


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
