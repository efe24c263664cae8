"""Record an EEG stream plus an LSL marker stream (e.g. from PsychoPy) for training.

Output for `--out session1`:
- session1.csv: header `lsl_time,unix_time,<channel labels>`, one row per sample. While
  recording it is session1.csv.part, flushed and fsync'ed every second, renamed when done, so a
  finished .csv is always complete and a crash leaves a readable .part.
- session1.json: stream description, markers [{time, unix_time, label}], gaps (dropped samples
  and stream drops, with reconnect = true), sample count and "complete"; rewritten atomically
  (temp file + os.replace) at every flush.
A lost stream is re-resolved by the LSL source; recording resumes and the gap goes into the JSON.
`load_recording` reads it all back into arrays.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EdgeError
from edge.sources.lsl import LSLSource, LSLSourceConfig, load_pylsl

log = logging.getLogger(__name__)

FORMAT = "emotion-edge/eeg-recording/1"


@dataclass
class Recording:
    """A recording loaded back: samples, clock, channel labels, markers and gaps."""

    timestamps: np.ndarray  # (n,) LSL clock of the recording machine
    unix_times: np.ndarray  # (n,) epoch seconds
    data: np.ndarray  # (n, channels), microvolts
    channels: tuple[str, ...]
    rate: float
    markers: list[tuple[float, str]]  # (LSL time, label)
    gaps: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)


def _paths(out: str | os.PathLike) -> tuple[Path, Path, Path]:
    base = Path(out)
    if base.suffix in (".csv", ".json"):
        base = base.with_suffix("")
    return base.with_suffix(".csv"), base.with_suffix(".csv.part"), base.with_suffix(".json")


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class _MarkerReader:
    """Follows the first LSL marker stream seen, re-finding it if it goes away."""

    def __init__(self, stream_type: str, name: str):
        self.pylsl = load_pylsl()
        self.stream_type, self.name = stream_type, name
        self.resolver = self.pylsl.ContinuousResolver(prop="type", value=stream_type, forget_after=2.0)
        self.inlet = None
        self.description: dict[str, Any] | None = None
        self._next_look = 0.0

    def poll(self) -> list[tuple[float, str]]:
        if self.inlet is None:
            now = time.monotonic()
            if now < self._next_look:
                return []
            self._next_look = now + 0.5
            found = [i for i in self.resolver.results() if not self.name or i.name() == self.name]
            if not found:
                return []
            info = found[0]
            self.inlet = self.pylsl.StreamInlet(info, max_buflen=360, recover=False,
                                                processing_flags=self.pylsl.proc_clocksync)
            self.inlet.open_stream(2.0)
            self.description = {"name": info.name(), "type": info.type(), "source_id": info.source_id(),
                                "hostname": info.hostname()}
            log.info("recording markers from %r", info.name())
        try:
            samples, stamps = self.inlet.pull_chunk(timeout=0.0)
        except self.pylsl.util.LostError:
            log.warning("marker stream lost; looking for it again")
            self.inlet = None
            return []
        return [(float(t), str(s[0]) if len(s) else "") for s, t in zip(samples, stamps)]

    def close(self) -> None:
        self.inlet = None
        self.resolver = None


def record(out: str | os.PathLike, source_config: LSLSourceConfig | None = None, duration_s: float = 0.0,
           stop: threading.Event | None = None, markers_type: str = "Markers", markers_name: str = "",
           flush_every_s: float = 1.0) -> Path:
    """Record until `stop` is set or `duration_s` of wall time passes; returns the CSV path."""
    csv_path, part_path, json_path = _paths(out)
    if csv_path.exists():
        raise EdgeError(f"{csv_path} already exists; choose another --out name so no recording is overwritten")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    source = LSLSource(source_config or LSLSourceConfig())
    markers = _MarkerReader(markers_type, markers_name) if markers_type else None
    stop = stop or threading.Event()
    meta: dict[str, Any] = {"format": FORMAT, "complete": False, "csv": part_path.name, "stream": None,
                            "channels": None, "rate": None, "samples": 0, "markers": [], "gaps": [],
                            "marker_stream": None, "started_unix": time.time(), "connects": 0}
    labels: list[str] | None = None
    started = time.monotonic()
    last_flush = started
    source.start()
    log.info("recording to %s (Ctrl-C to finish)", csv_path)
    try:
        with open(part_path, "w", encoding="utf-8", newline="") as fh:
            while not stop.is_set() and not (duration_s and time.monotonic() - started >= duration_s):
                try:
                    chunk = source.read(timeout=0.1)
                except KeyboardInterrupt:
                    log.info("finishing the recording")
                    break
                if chunk is not None:
                    if labels is None:
                        labels = list(source.description.labels)
                        meta["channels"], meta["rate"] = labels, source.description.nominal_rate
                        fh.write(",".join(["lsl_time", "unix_time"] + labels) + "\n")
                    elif list(source.description.labels) != labels:
                        raise EdgeError("the EEG stream came back with different channels "
                                        f"{list(source.description.labels)}; start a new recording")
                    if chunk.new_stream:
                        meta["stream"] = source.description.to_dict()
                        meta["connects"] += 1
                    meta["gaps"].extend(g.to_dict() for g in chunk.gaps)
                    _write_rows(fh, chunk.timestamps, source.to_unix(chunk.timestamps), chunk.data)
                    meta["samples"] += len(chunk.timestamps)
                if markers is not None:
                    for t, label in markers.poll():
                        meta["markers"].append({"time": t, "unix_time": float(source.to_unix(t)), "label": label})
                    meta["marker_stream"] = markers.description
                if time.monotonic() - last_flush >= flush_every_s:
                    fh.flush()
                    os.fsync(fh.fileno())
                    meta["source_stats"] = source.stats()
                    _write_json_atomic(json_path, meta)
                    last_flush = time.monotonic()
            if markers is not None:  # markers sent just before the end
                for t, label in markers.poll():
                    meta["markers"].append({"time": t, "unix_time": float(source.to_unix(t)), "label": label})
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        source.stop()
        if markers is not None:
            markers.close()
    if labels is None:
        part_path.unlink(missing_ok=True)
        meta["csv"] = None
        _write_json_atomic(json_path, meta)
        raise EdgeError("no EEG data arrived; is the headband streaming (check with `python -m edge.eeg.simulator`)?")
    os.replace(part_path, csv_path)
    meta.update(complete=True, csv=csv_path.name, ended_unix=time.time(), source_stats=source.stats())
    _write_json_atomic(json_path, meta)
    log.info("recorded %d samples, %d markers, %d gaps", meta["samples"], len(meta["markers"]), len(meta["gaps"]))
    return csv_path


def _write_rows(fh, lsl_times: np.ndarray, unix_times: np.ndarray, data: np.ndarray) -> None:
    buffer = io.StringIO()
    rows = np.column_stack([lsl_times, unix_times, data])
    np.savetxt(buffer, rows, delimiter=",", fmt=["%.6f", "%.6f"] + ["%.4f"] * data.shape[1])
    fh.write(buffer.getvalue())


def write_recording(out: str | os.PathLike, lsl_times: np.ndarray, unix_times: np.ndarray, data: np.ndarray,
                    labels: Sequence[str], rate: float, markers: Sequence[tuple[float, str]] = (),
                    stream: dict[str, Any] | None = None) -> Path:
    """Write samples and (LSL time, label) markers as a finished recording (what `record` leaves), each file
    through a temp file and a rename; returns the CSV path. For simulated sessions and converted data."""
    csv_path, part_path, json_path = _paths(out)
    if csv_path.exists():
        raise EdgeError(f"{csv_path} already exists; choose another output name so no recording is overwritten")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    lsl_times, unix_times = np.asarray(lsl_times, dtype=np.float64), np.asarray(unix_times, dtype=np.float64)
    offset = float(unix_times[0] - lsl_times[0]) if len(lsl_times) else 0.0
    with open(part_path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(["lsl_time", "unix_time"] + list(labels)) + "\n")
        _write_rows(fh, lsl_times, unix_times, np.asarray(data, dtype=np.float64))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part_path, csv_path)
    _write_json_atomic(json_path, {
        "format": FORMAT, "complete": True, "csv": csv_path.name, "stream": stream, "channels": list(labels),
        "rate": float(rate), "samples": int(len(lsl_times)), "gaps": [], "marker_stream": None,
        "markers": [{"time": float(t), "unix_time": float(t) + offset, "label": str(label)} for t, label in markers],
        "started_unix": float(unix_times[0]) if len(unix_times) else None,
        "ended_unix": float(unix_times[-1]) if len(unix_times) else None})
    return csv_path


def load_recording(path: str | os.PathLike) -> Recording:
    """Read a recording (give the .csv, the .json or the common stem) into arrays."""
    csv_path, part_path, json_path = _paths(path)
    if not json_path.exists():
        raise EdgeError(f"{json_path} not found; a recording is a .csv plus a .json written by edge.eeg.recorder")
    with open(json_path, encoding="utf-8") as fh:
        meta = json.load(fh)
    if meta.get("format") != FORMAT:
        raise EdgeError(f"{json_path} is not an emotion-edge EEG recording (format {meta.get('format')!r})")
    data_path = csv_path if csv_path.exists() else part_path
    if not data_path.exists():
        raise EdgeError(f"neither {csv_path} nor {part_path} exists; the recording holds no samples")
    if data_path == part_path:
        log.warning("%s was not finished; loading the samples flushed before it stopped", csv_path)
    with open(data_path, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
        if header[:2] != ["lsl_time", "unix_time"] or len(header) < 3:
            raise EdgeError(f"{data_path} has an unexpected header {header[:3]}...")
        body = fh.read()
    rows = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2) if body.strip() else np.empty((0, len(header)))
    if rows.shape[1] != len(header):
        raise EdgeError(f"{data_path} rows have {rows.shape[1]} columns but the header names {len(header)}")
    markers = [(float(m["time"]), str(m["label"])) for m in meta.get("markers", [])]
    return Recording(rows[:, 0], rows[:, 1], rows[:, 2:], tuple(header[2:]), float(meta.get("rate") or 0.0),
                     markers, list(meta.get("gaps", [])), meta)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emotion-edge record", description=__doc__.split("\n")[0])
    d = LSLSourceConfig()
    p.add_argument("--out", required=True, help="output stem: writes OUT.csv and OUT.json")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to record (0 = until Ctrl-C)")
    p.add_argument("--stream-type", default=d.stream_type, help="LSL type of the EEG stream")
    p.add_argument("--name", default="", help="EEG stream name")
    p.add_argument("--source-id", default="", help="EEG stream source_id")
    p.add_argument("--channels", type=int, default=d.channel_count, help="expected channel count (0 = any)")
    p.add_argument("--rate", type=float, default=d.nominal_rate, help="expected rate, Hz")
    p.add_argument("--markers-type", default="Markers", help="LSL type of the marker stream ('' = none)")
    p.add_argument("--markers-name", default="", help="marker stream name")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = LSLSourceConfig(stream_type=args.stream_type, name=args.name, source_id=args.source_id,
                             channel_count=args.channels, nominal_rate=args.rate)
    stop = threading.Event()
    try:
        path = record(args.out, config, args.duration, stop, args.markers_type, args.markers_name)
    except EdgeError as exc:
        log.error("%s", exc)
        return 2
    log.info("done: %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
