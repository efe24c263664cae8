"""Lab Streaming Layer inlet for a Muse (or any fixed-rate EEG) stream, with reconnect.

A background thread resolves the stream (by type, optionally name / source_id), opens an inlet
with clock synchronisation, pulls chunks into a queue and watches the timestamps: gaps and
dropped samples are detected against the nominal rate. When the stream is lost (sender closed,
or no data for `lsl.stale_after_s`) the inlet is dropped and the stream resolved again with
edge.backoff.Backoff, without restarting the process. A stream with the wrong channel count or
rate is a configuration problem: `read()` raises EdgeError saying so.

Gaps are judged against the stream's own timeline (sample count x period), not only the previous
sample: many senders (muselsl-style bridges) stamp a whole chunk with its receipt time, so their
chunk boundaries move back and forth by the delivery jitter although no sample is missing. A late
step inside the band of offsets seen in the last JITTER_WINDOW_S is jitter; a step beyond it holds
its chunk for up to GAP_CONFIRM_S and is a gap only if the samples after it stay late by more than
twice the jitter seen before and after it. So in a jittery stream only gaps longer than about twice
its jitter are seen, and `missing` is exact to within the jitter. Every gap is counted in stats;
the warnings go through edge.logsummary.Repeats (the first at once, then one summary per minute).

Timestamps handed out are on this machine's LSL clock (`pylsl.local_clock()`); `to_unix()`
converts them to epoch seconds. Senders that stamp with their wall clock (seen in some Muse
bridges) are detected in "auto" mode and converted.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.backoff import Backoff
from edge.errors import EdgeError
from edge.logsummary import Repeats
from edge.sources.base import Source

log = logging.getLogger(__name__)

TIMESTAMP_MODES = ("auto", "lsl", "wall", "receive")
DEFAULT_MUSE_LABELS = ("TP9", "AF7", "AF8", "TP10", "Right AUX")
# stats()["state"] values, the same words as edge.sources.base uses, plus "error" (wrong stream).
STARTING, RUNNING, RECONNECTING, STOPPED, ERROR = "starting", "running", "reconnecting", "stopped", "error"
# How long a late step beyond the known jitter waits for the samples after it to show whether it was a gap
# (they stay late) or jitter (one of them comes back). Only such chunks are delayed, by at most this much.
GAP_CONFIRM_S = 0.5
# Seconds of recent chunks whose timeline offsets make the jitter band.
JITTER_WINDOW_S = 5.0


def load_pylsl():
    """Import pylsl, turning a missing liblsl into an EdgeError that says how to install it.

    A PYLSL_LIB that names no file is refused here: pylsl itself skips it and quietly loads whatever other
    liblsl it finds, so a device would run on a library its operator did not choose."""
    configured = os.environ.get("PYLSL_LIB")
    if configured and not os.path.isfile(configured):
        raise EdgeError(f"PYLSL_LIB={configured} names no file; point PYLSL_LIB at an existing liblsl.so (the "
                        "device bundle installs /opt/emotion-edge/lib/liblsl.so, docs/devices.md) or unset it")
    try:
        import pylsl
    except ImportError as exc:
        if exc.name == "pylsl":
            raise EdgeError("the pylsl package is not installed: run `pip install pylsl` "
                            "(or `pip install emotion-edge[runtime]`)") from exc
        raise _liblsl_error(exc) from exc
    except (RuntimeError, OSError) as exc:
        raise _liblsl_error(exc) from exc
    return pylsl


def _liblsl_error(exc: Exception) -> EdgeError:
    reason = " ".join(str(exc).split("\n")[0].split())  # pylsl's first line; the rest is its install advice
    configured = os.environ.get("PYLSL_LIB")
    if configured:
        return EdgeError(f"PYLSL_LIB={configured} is not a liblsl this machine can load ({reason}); point "
                         "PYLSL_LIB at the liblsl.so for this CPU (the device bundle installs "
                         "/opt/emotion-edge/lib/liblsl.so, docs/devices.md) or unset it")
    return EdgeError(
        f"liblsl, the Lab Streaming Layer C library, could not be loaded ({reason}). The pylsl wheels for "
        "aarch64 (Raspberry Pi, Jetson) do not bundle it: install with the device bundle, which ships "
        "/opt/emotion-edge/lib/liblsl.so (docs/devices.md), or point PYLSL_LIB at an existing liblsl.so, "
        "then start again.")


def _liblsl_path(pylsl) -> str:
    """Which liblsl this process uses (PYLSL_LIB, the wheel's copy or the system's), for the start-up log."""
    library = getattr(getattr(pylsl, "lib", None), "lib", None)
    return getattr(library, "_name", None) or "an unknown path"


def to_unix(lsl_time: float | np.ndarray) -> float | np.ndarray:
    """Convert a time on the local LSL clock to Unix epoch seconds."""
    pylsl = load_pylsl()
    return lsl_time + (time.time() - pylsl.local_clock())


@dataclass
class LSLSourceConfig:
    """Which LSL stream to read and how to watch it (section `lsl`)."""

    # LSL stream type to resolve; Muse bridges (muselsl, BlueMuse, Mind Monitor) publish "EEG".
    stream_type: str = "EEG"
    # Only accept a stream with this name ("" = any name).
    name: str = ""
    # Only accept a stream with this source_id ("" = any); lets a restarted sender be found again.
    source_id: str = ""
    # Channels the stream must have (Muse: 4 EEG + Right AUX = 5); 0 accepts any count.
    channel_count: int = 5
    # Sampling rate the stream must declare, in Hz (Muse: 256).
    nominal_rate: float = 256.0
    # Allowed relative difference between the declared and the expected rate.
    rate_tolerance: float = 0.01
    # Seconds one resolve attempt waits for the stream.
    resolve_timeout_s: float = 2.0
    # No data for this many seconds counts as a lost stream and triggers a re-resolve.
    stale_after_s: float = 3.0
    # Shortest and longest wait between resolve attempts (edge.backoff.Backoff: jittered, doubling bound).
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    # A step between timestamps longer than this many sample periods is a gap.
    gap_threshold_samples: float = 1.5
    # Seconds of data liblsl buffers in the inlet while we are busy.
    buffer_s: int = 30
    # Let liblsl smooth timestamp jitter (off: it also smooths away the jumps gap detection needs).
    dejitter: bool = False
    # Timestamp source: "auto" (LSL clock, or sender wall clock when detected), "lsl", "wall", "receive".
    timestamps: str = "auto"
    # Chunks held for a slow reader before the oldest are dropped (stats "dropped"); 1024 ~ 48 s of Muse.
    queue_chunks: int = 1024

    def validate(self) -> LSLSourceConfig:
        """Raise EdgeError naming `lsl.<key>` for the first bad value; returns self."""
        if not self.stream_type and not self.name and not self.source_id:
            _bad("stream_type", self.stream_type, "a stream type such as \"EEG\" (or set lsl.name / lsl.source_id)")
        if not isinstance(self.channel_count, int) or self.channel_count < 0:
            _bad("channel_count", self.channel_count, "a whole number of channels (5 for a Muse), or 0 for any")
        if not self.nominal_rate > 0:
            _bad("nominal_rate", self.nominal_rate, "the stream's sampling rate in Hz, e.g. 256")
        if not 0 <= self.rate_tolerance < 0.5:
            _bad("rate_tolerance", self.rate_tolerance, "a fraction such as 0.01")
        for key in ("resolve_timeout_s", "stale_after_s", "backoff_initial_s", "backoff_max_s"):
            if not getattr(self, key) > 0:
                _bad(key, getattr(self, key), "a positive number of seconds")
        if self.backoff_max_s < self.backoff_initial_s:
            _bad("backoff_max_s", self.backoff_max_s, "at least lsl.backoff_initial_s")
        if not self.gap_threshold_samples >= 1.0:
            _bad("gap_threshold_samples", self.gap_threshold_samples, "at least 1 sample period (default 1.5)")
        if not isinstance(self.buffer_s, int) or self.buffer_s < 1:
            _bad("buffer_s", self.buffer_s, "a whole number of seconds >= 1")
        if self.timestamps not in TIMESTAMP_MODES:
            _bad("timestamps", self.timestamps, " | ".join(TIMESTAMP_MODES))
        if not isinstance(self.queue_chunks, int) or self.queue_chunks < 1:
            _bad("queue_chunks", self.queue_chunks, "a whole number >= 1")
        return self


def _bad(key: str, value, expected: str) -> None:
    raise EdgeError(f"lsl.{key} = {value!r} is not valid: expected {expected}")


@dataclass
class Gap:
    """Missing data before sample `index` of a chunk."""

    index: int
    start: float  # LSL time of the last sample before the gap
    end: float  # LSL time of the first sample after it
    missing: int  # samples that should have arrived in between
    reconnect: bool = False  # the gap spans a lost and re-found stream

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "seconds": round(self.seconds, 4),
                "missing_samples": self.missing, "reconnect": self.reconnect}


@dataclass
class Chunk:
    """Samples pulled at once: timestamps (n,) on the local LSL clock, data (n, channels)."""

    timestamps: np.ndarray
    data: np.ndarray
    received: float  # local LSL clock when the chunk was pulled
    gaps: list[Gap] = field(default_factory=list)
    new_stream: bool = False  # first chunk after (re)connecting


@dataclass
class StreamDescription:
    name: str
    type: str
    source_id: str
    channel_count: int
    nominal_rate: float
    labels: tuple[str, ...]
    units: tuple[str, ...]
    manufacturer: str
    hostname: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


class LSLSource(Source[Chunk]):
    """EEG from LSL with start/stop/read/stats; reconnects on its own until stopped."""

    def __init__(self, config: LSLSourceConfig | None = None, repeat_interval_s: float = 60.0):
        """`repeat_interval_s`: how often repeated gap warnings are summarised (tests shorten it)."""
        self.config = (config or LSLSourceConfig()).validate()
        self._pylsl = load_pylsl()
        log.info("liblsl %s loaded from %s", self._pylsl.library_version(), _liblsl_path(self._pylsl))
        self._queue: queue.Queue[Chunk] = queue.Queue(maxsize=self.config.queue_chunks)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: EdgeError | None = None
        self._lock = threading.Lock()
        self.description: StreamDescription | None = None
        self._last_ts: float | None = None
        self._wall_offset = 0.0
        self._state = STOPPED
        self._counters = {"samples": 0, "chunks": 0, "read": 0, "dropped": 0, "gaps": 0, "dropped_samples": 0,
                          "reconnects": 0, "connects": 0, "out_of_order": 0, "resolves": 0}
        self._recent: deque[tuple[float, int]] = deque()
        self._recent_gaps: deque[Gap] = deque(maxlen=50)
        self._last_data = 0.0
        self._time_correction = 0.0
        self._timestamp_mode = self.config.timestamps
        self._fresh = False
        self._repeats = Repeats(log, repeat_interval_s)
        self._backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s)
        self._held: deque[Chunk] = deque()  # chunks waiting for a late step in them to be judged
        self._band: deque[tuple[float, float, float]] = deque()  # (received, min, max) timeline offset per chunk
        self._position = 0.0  # samples since the stream was opened, plus the missing ones of confirmed gaps
        self._last_offset: float | None = None  # the last judged sample's offset from that timeline
        self._last_stamp = 0.0

    # -- public interface ------------------------------------------------------------------
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._error = None
        self._state = STARTING
        self._thread = threading.Thread(target=self._run, name="lsl-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.config.resolve_timeout_s + 2.0)
        self._thread = None
        self._state = STOPPED
        self._repeats.flush()

    def read(self, timeout: float | None = None) -> Chunk | None:
        """Oldest unread chunk, waiting up to `timeout` s (None: until one comes); None if none came.

        Chunks are queued in order, never overwritten: the filters need every sample. A stream with
        the wrong channel count or rate raises EdgeError here.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))
            try:
                chunk = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                if self._error is not None:
                    raise self._error
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            with self._lock:
                self._counters["read"] += 1
            return chunk

    def wait_connected(self, timeout: float) -> bool:
        """Block until a stream is open (for tests and start-up messages)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._error is not None:
                raise self._error
            if self._state == RUNNING:
                return True
            time.sleep(0.02)
        return False

    def stats(self) -> dict[str, Any]:
        now = self._pylsl.local_clock()
        with self._lock:
            recent = [(t, n) for t, n in self._recent if now - t <= 10.0]
            rate = 0.0
            if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
                rate = sum(n for _, n in recent[1:]) / (recent[-1][0] - recent[0][0])
            return {
                "state": self._state,
                "stream": self.description.to_dict() if self.description else None,
                **self._counters,
                "effective_rate_hz": round(rate, 2),
                "last_data_age_s": round(now - self._last_data, 3) if self._last_data else None,
                "time_correction_s": round(self._time_correction, 6),
                "timestamp_mode": self._timestamp_mode,
                "recent_gaps": [g.to_dict() for g in self._recent_gaps],
                "error": str(self._error) if self._error else None,
            }

    def to_unix(self, lsl_time: float | np.ndarray) -> float | np.ndarray:
        return lsl_time + (time.time() - self._pylsl.local_clock())

    # -- background thread -----------------------------------------------------------------
    def _run(self) -> None:
        self._backoff.reset()
        while not self._stop.is_set():
            self._counters["resolves"] += 1  # the runtime's watchdog sees a source waiting, not a hung one
            try:
                inlet = self._connect()
            except EdgeError as exc:  # raised to the reader by read() / wait_connected(), which reports it once
                self._error, self._state = exc, ERROR
                return
            except (self._pylsl.util.TimeoutError, self._pylsl.util.LostError) as exc:
                log.warning("opening the LSL stream failed (%s: %s); retrying", type(exc).__name__, exc)
                inlet = None
            except Exception:  # unexpected liblsl failure: keep the trace, keep trying
                log.exception("resolving the LSL stream failed; retrying")
                inlet = None
            if inlet is None:
                self._stop.wait(self._backoff.next())
                continue
            self._backoff.reset()
            reason = self._pump(inlet)
            self._release(force=True)
            try:
                inlet.close_stream()
            except Exception:
                log.debug("closing the inlet failed", exc_info=True)
            del inlet
            if reason != "stopped":
                self._state = RECONNECTING
                self._counters["reconnects"] += 1
                log.warning("EEG stream lost (%s); resolving it again", reason)

    def _connect(self):
        pylsl, cfg = self._pylsl, self.config
        if cfg.source_id:
            found = pylsl.resolve_byprop("source_id", cfg.source_id, 1, cfg.resolve_timeout_s)
        elif cfg.name:
            found = pylsl.resolve_byprop("name", cfg.name, 1, cfg.resolve_timeout_s)
        else:
            found = pylsl.resolve_byprop("type", cfg.stream_type, 1, cfg.resolve_timeout_s)
        candidates = [info for info in found
                      if (not cfg.stream_type or info.type() == cfg.stream_type)
                      and (not cfg.name or info.name() == cfg.name)
                      and (not cfg.source_id or info.source_id() == cfg.source_id)]
        if not candidates:
            if self._state == RUNNING:
                self._state = RECONNECTING
            log.info("no LSL stream of type %r%s yet", cfg.stream_type,
                     f" named {cfg.name!r}" if cfg.name else "")
            return None
        problems = [p for p in (self._mismatch(info) for info in candidates) if p]
        good = [info for info in candidates if not self._mismatch(info)]
        if not good:
            raise EdgeError(problems[0])
        info = good[0]
        flags = pylsl.proc_clocksync | (pylsl.proc_dejitter if cfg.dejitter else 0)
        inlet = pylsl.StreamInlet(info, max_buflen=cfg.buffer_s, max_chunklen=0, recover=False,
                                  processing_flags=flags)
        inlet.open_stream(cfg.resolve_timeout_s)
        try:  # the first estimate takes ~0.6 s of probing; clocksync keeps it updated afterwards
            self._time_correction = inlet.time_correction(max(2.0, cfg.resolve_timeout_s))
        except pylsl.util.TimeoutError:
            log.warning("no clock offset estimate from the EEG sender yet; timestamps may be offset")
            self._time_correction = 0.0
        self.description = _describe(inlet.info(cfg.resolve_timeout_s))
        self._counters["connects"] += 1
        self._state = RUNNING
        self._last_data = pylsl.local_clock()
        self._fresh = True
        log.info("reading LSL stream %r (%s, %d ch @ %g Hz, clock offset %.4f s)", info.name(),
                 info.source_id(), info.channel_count(), info.nominal_srate(), self._time_correction)
        return inlet

    def _mismatch(self, info) -> str | None:
        cfg = self.config
        where = f"LSL stream {info.name()!r} (type {info.type()!r}, source_id {info.source_id()!r})"
        if cfg.channel_count and info.channel_count() != cfg.channel_count:
            return (f"{where} has {info.channel_count()} channels but lsl.channel_count is {cfg.channel_count}; "
                    "pick the right stream with lsl.name / lsl.source_id or set lsl.channel_count")
        rate = info.nominal_srate()
        if abs(rate - cfg.nominal_rate) > cfg.rate_tolerance * cfg.nominal_rate:
            return (f"{where} declares {rate:g} Hz but lsl.nominal_rate is {cfg.nominal_rate:g} Hz; "
                    "set lsl.nominal_rate to the headband's rate or fix the sender")
        return None

    def _pump(self, inlet) -> str:
        pylsl, cfg = self._pylsl, self.config
        while not self._stop.is_set():
            try:
                # pull_chunk with a timeout waits for max_samples; block on one sample instead, then
                # take whatever else is already there, so a chunk is handed on as soon as it lands.
                first, first_ts = inlet.pull_sample(timeout=0.1)
                data, stamps = ([], []) if first_ts is None else inlet.pull_chunk(timeout=0.0, max_samples=1024)
            except pylsl.util.LostError:
                return "sender closed the stream"
            now = pylsl.local_clock()
            if first_ts is not None:
                data, stamps = [first] + list(data), [first_ts] + list(stamps)
            if self._held:
                self._release()
            if not stamps:
                if now - self._last_data > cfg.stale_after_s:
                    return f"no data for {cfg.stale_after_s:g} s"
                continue
            self._last_data = now
            self._deliver(np.asarray(data, dtype=np.float64), np.asarray(stamps, dtype=np.float64), now)
        return "stopped"

    def _deliver(self, data: np.ndarray, stamps: np.ndarray, now: float) -> None:
        period = 1.0 / self.config.nominal_rate
        fresh, self._fresh = self._fresh, False
        if fresh and self.config.timestamps == "auto":
            # A sender stamping with time.time() lands decades away from our LSL clock.
            wall_like = abs(stamps[-1] - now) > 3600 and abs(stamps[-1] - time.time()) < 3600
            self._timestamp_mode = "wall" if wall_like else "lsl"
            if wall_like:
                log.warning("EEG sender stamps samples with its wall clock; converting to the LSL clock")
        if self._timestamp_mode == "wall":
            stamps = stamps - (time.time() - now)
        elif self._timestamp_mode == "receive":
            stamps = now - period * np.arange(len(stamps) - 1, -1, -1)
            if self._last_ts is not None and stamps[0] <= self._last_ts:
                stamps = stamps + (self._last_ts + period - stamps[0])
        self._counters["out_of_order"] += int(np.sum(np.diff(stamps) <= 0)) + int(
            self._last_ts is not None and not fresh and stamps[0] <= self._last_ts)
        chunk = Chunk(stamps, data, now, [], new_stream=fresh)
        if fresh:
            # A new stream: a step from the old one's last sample is a gap across the reconnect, and the
            # timeline and its jitter band start again.
            if self._last_ts is not None and stamps[0] - self._last_ts > self.config.gap_threshold_samples * period:
                step = stamps[0] - self._last_ts
                chunk.gaps.append(Gap(0, self._last_ts, float(stamps[0]), max(1, round(step / period) - 1),
                                      reconnect=True))
            self._release(force=True)
            self._band.clear()
            self._position = 0.0
        self._last_ts = float(stamps[-1])
        self._held.append(chunk)
        self._release()

    def _release(self, force: bool = False) -> None:
        """Judge the held chunks' late steps in order and hand on every chunk that is settled; a chunk whose
        late step is still within GAP_CONFIRM_S of its arrival (unless `force`) waits, with all after it."""
        now = self._pylsl.local_clock()
        while self._held:
            gaps = self._judge(self._held[0], list(self._held)[1:], force or now - self._held[0].received
                               >= GAP_CONFIRM_S)
            if gaps is None:
                return
            chunk = self._held.popleft()
            chunk.gaps.extend(gaps)
            self._hand_on(chunk)

    def _judge(self, chunk: Chunk, later: list[Chunk], decide: bool) -> list[Gap] | None:
        """The gaps in `chunk`, or None while one of its late steps cannot be decided yet (`decide` False).
        Moves the timeline and the jitter band on only when it returns a list.

        Offsets are each sample's lateness against the sample count (timestamp - position x period): a
        chunk-stamping sender's offsets wander within its delivery jitter, a lost stretch raises them for good."""
        period = 1.0 / self.config.nominal_rate
        tolerance = (self.config.gap_threshold_samples - 1.0) * period  # lateness allowed when there is no jitter
        stamps = chunk.timestamps
        position = self._position
        offsets = stamps - (position + np.arange(len(stamps))) * period
        previous = None if chunk.new_stream else self._last_offset
        steps = np.diff(offsets, prepend=np.nan if previous is None else previous)
        gaps: list[Gap] = []
        for i in np.flatnonzero(steps > tolerance):  # usually none: the band is only looked at for late steps
            known = [value for _, low, high in self._band for value in (low, high)]
            known += [previous] if previous is not None else []
            known += [float(offsets[:i].min()), float(offsets[:i].max())] if i else []
            low, high = min(known), max(known)
            if offsets[i] <= high:
                continue  # within the jitter this sender has shown lately
            if not decide:
                return None
            counts = np.cumsum([len(stamps)] + [len(c.timestamps) for c in later])
            after = np.concatenate([offsets[i:]] + [c.timestamps - (position + start + np.arange(len(c.timestamps)))
                                                    * period for c, start in zip(later, counts)])
            late = float(after.min()) - low
            if late <= max(tolerance, 2.0 * (high - low), 2.0 * float(after.max() - after.min())):
                continue  # samples after it came back near the timeline: the sender's jitter, nothing missing
            missing = max(1, round(late / period))
            gaps.append(Gap(int(i), float(stamps[i - 1]) if i else self._last_stamp, float(stamps[i]), missing))
            offsets[i:] -= missing * period
            position += missing
        self._position = position + len(stamps)
        self._last_offset, self._last_stamp = float(offsets[-1]), float(stamps[-1])
        while self._band and chunk.received - self._band[0][0] > JITTER_WINDOW_S:
            self._band.popleft()
        self._band.append((chunk.received, float(offsets.min()), float(offsets.max())))
        return gaps

    def _hand_on(self, chunk: Chunk) -> None:
        now = chunk.received
        gaps = chunk.gaps
        with self._lock:
            self._counters["samples"] += len(chunk.timestamps)
            self._counters["chunks"] += 1
            self._counters["gaps"] += len(gaps)
            self._counters["dropped_samples"] += sum(g.missing for g in gaps)
            self._recent_gaps.extend(gaps)
            self._recent.append((now, len(chunk.timestamps)))
            while self._recent and now - self._recent[0][0] > 10.0:
                self._recent.popleft()
        for gap in gaps:
            self._repeats.note(("gap", gap.reconnect), logging.WARNING, "EEG gap of %.3f s (%d samples missing)%s",
                               gap.seconds, gap.missing, " across a reconnect" if gap.reconnect else "")
        while True:
            try:
                self._queue.put_nowait(chunk)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self._counters["dropped"] += 1
                except queue.Empty:
                    pass


def _describe(info) -> StreamDescription:
    """Channel labels and units from the stream's XML description (Muse order when absent)."""
    labels, units = [], []
    channel = info.desc().child("channels").child("channel")
    while not channel.empty():
        labels.append(channel.child_value("label"))
        units.append(channel.child_value("unit"))
        channel = channel.next_sibling()
    count = info.channel_count()
    if len(labels) != count or not all(labels):
        labels = list(DEFAULT_MUSE_LABELS[:count]) if count <= len(DEFAULT_MUSE_LABELS) else [
            f"ch{i}" for i in range(count)]
        units = ["microvolts"] * count
    return StreamDescription(info.name(), info.type(), info.source_id(), count, info.nominal_srate(),
                             tuple(labels), tuple(units), info.desc().child_value("manufacturer"),
                             info.hostname(), info.created_at())
