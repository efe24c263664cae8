"""Lab Streaming Layer outlets, so LabRecorder records the device's estimates time-synced with the EEG.

Two streams (docs/fusion.md, "LSL outlet"):
- events: an irregular-rate string marker stream, one event JSON per sample (Event.to_json()), stamped
  with the event's capture time on this machine's LSL clock;
- affect: a regular-rate float stream, channels <modality>_valence and <modality>_arousal (face, voice,
  eeg, fused by default), NaN for no data. Sample k is stamped t_k on the LSL clock and carries, per
  channel, the latest value captured at or before t_k. Since estimates arrive after their capture
  (a voice window is analysed when it is complete), the stream runs `delay_s` behind real time: sample t_k
  is pushed once the clock passes t_k + delay_s, by the sink's timer thread or when handle() catches up.
  An estimate that arrives later than that is put into the next sample and counted as "late".

Capture times are Unix seconds (Observation.timestamp); they are converted to the LSL clock
(pylsl.local_clock) with the same offset edge.sources.lsl uses the other way, so LabRecorder's clock
synchronisation aligns them with the Muse stream recorded from this machine.

Off by default: liblsl announces and serves an outlet on every network interface, so anyone on the
local network can discover and read it, even with a loopback-only lsl_api.cfg.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from edge.errors import EdgeError
from edge.events import Event
from edge.observation import Observation

log = logging.getLogger(__name__)

UNIT = "normalized"  # valence/arousal are dimensionless positions in [-1, 1] on the circumplex
MAX_CATCH_UP_S = 60.0  # after a longer stall the numeric stream skips ahead instead of pushing a burst


@dataclass
class LslOutletConfig:
    SECTION: ClassVar[str] = "lsl_outlet"

    # off by default: an LSL outlet is visible to every machine on the local network (liblsl binds all
    # interfaces even with a loopback-only lsl_api.cfg); turn it on only on a lab network you trust
    enabled: bool = False
    events_stream: str = "emotion-edge-events"  # LSL name of the marker stream: one JSON event per sample
    affect_stream: str = "emotion-edge-affect"  # LSL name of the numeric stream of valence/arousal per modality
    rate_hz: float = 10.0  # nominal rate of the numeric stream, samples per second
    # modalities with a <modality>_valence and <modality>_arousal channel each, in this order
    modalities: tuple[str, ...] = ("face", "voice", "eeg", "fused")
    # seconds the numeric stream runs behind real time, so an estimate that arrives this long after its capture
    # still lands in the sample of its capture time (a voice window is analysed once it is complete)
    delay_s: float = 3.0
    hold_s: float = 5.0  # a channel reads NaN once its latest estimate was captured longer ago than this
    queue_size: int = 1000  # this sink's bus queue; the oldest message is dropped past it

    def validate(self) -> LslOutletConfig:
        if not isinstance(self.enabled, bool):
            _bad("enabled", self.enabled, "true or false")
        for key in ("events_stream", "affect_stream"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key).strip():
                _bad(key, getattr(self, key), "a stream name LabRecorder will show, e.g. \"emotion-edge-events\"")
        if self.events_stream == self.affect_stream:
            _bad("affect_stream", self.affect_stream, "a name other than lsl_outlet.events_stream")
        if not _number(self.rate_hz) or not 0 < self.rate_hz <= 1000:
            _bad("rate_hz", self.rate_hz, "samples per second in (0, 1000], e.g. 10")
        names = self.modalities
        if not names or len(set(names)) != len(names) or \
                not all(isinstance(m, str) and re.fullmatch(r"[a-z0-9_]+", m) for m in names):
            _bad("modalities", self.modalities, "distinct lower-case modality names, e.g. [\"face\", \"fused\"]")
        if not _number(self.delay_s) or not 0 <= self.delay_s <= 60:
            _bad("delay_s", self.delay_s, "seconds in [0, 60]")
        if not _number(self.hold_s) or not self.hold_s > 0:
            _bad("hold_s", self.hold_s, "a positive number of seconds")
        if isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 1:
            _bad("queue_size", self.queue_size, "a whole number >= 1")
        return self

    def channels(self) -> list[str]:
        return [f"{modality}_{dimension}" for modality in self.modalities for dimension in ("valence", "arousal")]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bad(key: str, value: Any, expected: str) -> None:
    raise EdgeError(f"lsl_outlet.{key} = {value!r} is not valid: expected {expected}")


def event_unix_time(event: Event) -> float:
    """An event's capture time in Unix seconds (its timestamp is ISO 8601 UTC, or already a number)."""
    stamp = event.timestamp
    if isinstance(stamp, (int, float)):
        return float(stamp)
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


class LslOutletSink:
    """Events as LSL markers and per-modality valence/arousal as a regular LSL stream."""

    name = "lsl_outlet"
    accepts = (Observation, Event)

    def __init__(self, config: LslOutletConfig, device_id: str = "emotion-edge"):
        self.config = config.validate()
        self.device_id = device_id
        self.queue_size = config.queue_size
        self._pylsl = None
        self._events = self._affect = None
        self._period = 1.0 / config.rate_hz
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # (modality, subject) -> sorted [(capture time on the LSL clock, valence, arousal)], NaN for no data
        self._history: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        self._last_subject: dict[str, str] = {}  # modality -> subject of its latest observation
        self._preferred: dict[str, str] = {}  # modality -> subject the latest fused observation used
        self._grid0 = 0.0
        self._next = 0  # index of the next numeric sample: its time is grid0 + next * period
        self.counts = {"markers": 0, "samples": 0, "late": 0, "skipped": 0}
        self.state = "stopped"

    # -- Sink protocol -----------------------------------------------------------------------
    def start(self) -> None:
        from edge.sources.lsl import load_pylsl

        pylsl = self._pylsl = load_pylsl()
        try:
            self._events = pylsl.StreamOutlet(self._events_info(pylsl))
            self._affect = pylsl.StreamOutlet(self._affect_info(pylsl), 1, 360)
        except (RuntimeError, OSError, ValueError) as exc:
            raise EdgeError(f"cannot open the LSL outlets ({exc}); check lsl_outlet.* and liblsl's lsl_api.cfg, "
                            "or set lsl_outlet.enabled = false") from None
        self._grid0 = pylsl.local_clock() - self.config.delay_s
        self._next = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lsl-outlet", daemon=True)
        self._thread.start()
        self.state = "running"
        log.warning("LSL outlets %r and %r are open and visible to every machine on the local network",
                    self.config.events_stream, self.config.affect_stream)

    def handle(self, messages: list) -> None:
        with self._lock:
            for message in messages:
                if isinstance(message, Event):
                    self._push_marker(message)
                elif isinstance(message, Observation):
                    self._remember(message)
            self._push_due(self._pylsl.local_clock() - self.config.delay_s)

    def stop(self) -> None:
        """Push the numeric samples up to now (everything captured so far has been delivered), then close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        with self._lock:
            if self._affect is not None:
                self._push_due(self._pylsl.local_clock())
            self._events = self._affect = None
        self.state = "stopped"

    def health(self) -> dict[str, Any]:
        with self._lock:
            consumers = {"events": bool(self._events and self._events.have_consumers()),
                         "affect": bool(self._affect and self._affect.have_consumers())}
            return {"state": self.state, **self.counts, "consumers": consumers}

    # -- streams -------------------------------------------------------------------------------
    def _events_info(self, pylsl):
        info = pylsl.StreamInfo(self.config.events_stream, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string,
                                f"{self.device_id}-events")
        desc = info.desc()
        desc.append_child_value("manufacturer", "emotion-edge")
        desc.append_child_value("device_id", self.device_id)
        desc.append_child_value("content", "one emotion-edge event as JSON per sample, stamped at capture time")
        desc.append_child("channels").append_child("channel").append_child_value("label", "event")
        return info

    def _affect_info(self, pylsl):
        info = pylsl.StreamInfo(self.config.affect_stream, "Affect", len(self.config.channels()),
                                self.config.rate_hz, pylsl.cf_float32, f"{self.device_id}-affect")
        desc = info.desc()
        desc.append_child_value("manufacturer", "emotion-edge")
        desc.append_child_value("device_id", self.device_id)
        desc.append_child_value("missing", "NaN: no estimate (no data, or none captured within hold_s)")
        desc.append_child_value("delay_s", repr(self.config.delay_s))
        desc.append_child_value("hold_s", repr(self.config.hold_s))
        channels = desc.append_child("channels")
        for modality in self.config.modalities:
            for dimension in ("valence", "arousal"):
                channel = channels.append_child("channel")
                channel.append_child_value("label", f"{modality}_{dimension}")
                channel.append_child_value("unit", UNIT)
                channel.append_child_value("type", dimension)
                channel.append_child_value("modality", modality)
                channel.append_child_value("range", "-1 1")
        return info

    # -- work ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self._period):
            with self._lock:
                if self._affect is not None:
                    self._push_due(self._pylsl.local_clock() - self.config.delay_s)

    def _to_lsl(self, unix_time: float) -> float:
        return unix_time - (time.time() - self._pylsl.local_clock())

    def _push_marker(self, event: Event) -> None:
        self._events.push_sample([event.to_json()], self._to_lsl(event_unix_time(event)))
        self.counts["markers"] += 1

    def _remember(self, observation: Observation) -> None:
        modality = observation.modality
        if modality not in self.config.modalities:
            return
        if modality == "fused":
            for name, part in (observation.extra.get("contributions") or {}).items():
                if isinstance(part, dict) and part.get("subject"):
                    self._preferred[name] = part["subject"]
        stamp = self._to_lsl(observation.timestamp)
        if stamp <= self._grid0 + (self._next - 1) * self._period:
            self.counts["late"] += 1  # belongs in a sample already pushed: shows in the next one
        data = observation.has_data and observation.kind != "end"
        value = (stamp, observation.valence if data else math.nan, observation.arousal if data else math.nan)
        bisect.insort(self._history.setdefault((modality, observation.subject), []), value)
        self._last_subject[modality] = observation.subject

    def _value(self, modality: str, at: float) -> tuple[float, float]:
        subject = self._preferred.get(modality)
        if (modality, subject) not in self._history:
            subject = self._last_subject.get(modality)
        entries = self._history.get((modality, subject))
        if not entries:
            return math.nan, math.nan
        index = bisect.bisect_right(entries, (at, math.inf, math.inf)) - 1
        if index < 0 or at - entries[index][0] > self.config.hold_s:
            return math.nan, math.nan
        return entries[index][1], entries[index][2]

    def _push_due(self, until: float) -> None:
        if until - (self._grid0 + self._next * self._period) > MAX_CATCH_UP_S:
            skip = int((until - MAX_CATCH_UP_S - self._grid0) / self._period) - self._next
            self._next += skip
            self.counts["skipped"] += skip
        while self._grid0 + self._next * self._period <= until:
            at = self._grid0 + self._next * self._period
            sample = [value for modality in self.config.modalities for value in self._value(modality, at)]
            self._affect.push_sample(sample, at)
            self._next += 1
            self.counts["samples"] += 1
        self._prune(self._grid0 + (self._next - 1) * self._period)

    def _prune(self, pushed: float) -> None:
        """Keep per subject the newest entry at or before the last pushed sample and all after it; forget
        subjects with nothing captured within hold_s of it (ended face tracks)."""
        for key in list(self._history):
            entries = self._history[key]
            index = bisect.bisect_right(entries, (pushed, math.inf, math.inf)) - 1
            if index > 0:
                del entries[:index]
            if entries[-1][0] < pushed - self.config.hold_s:
                del self._history[key]


def make(config, context=None) -> LslOutletSink | None:
    """The sink from the AppConfig, or None when lsl_outlet.enabled is false (the default)."""
    section = config.lsl_outlet
    if not section.enabled:
        return None
    device = getattr(config, "device", None)
    return LslOutletSink(section, getattr(device, "id", "emotion-edge"))
