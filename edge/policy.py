"""The one event policy: which smoothed observations become events, and what each modality's state is.

For every modality alike (fusion included):
- a subject's "start" and "end" observations become `track_start` / `track_end` events (an "end" only
  for a subject that had a "start": a microphone or headband whose input ends is not a track);
- an `emotion` event when the smoothed label changes, and, where the modality asks for it
  (`interval_s` > 0), at least every `interval_s` seconds of capture time even without a change (EEG: an
  index estimate has no label to change);
- the modality's retained state is its primary subject's latest smoothed observation (the largest face
  box; the only subject of voice, EEG and fusion) plus how many subjects are open. It is refreshed with
  every observation, or at most every `state_interval_s` seconds when that is set (a 15 fps camera would
  otherwise rewrite a retained topic 15 times a second), and at once when a subject comes or goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .events import Event, utc_timestamp
from .observation import Observation, rounded

EVENT_KINDS = {"start": "track_start", "end": "track_end", "state": "emotion"}


@dataclass(frozen=True)
class State:
    """A modality's current state, as a hub shows it."""
    modality: str
    timestamp: float
    primary: Observation | None
    subjects: int
    paused: bool = False  # switched off by a control: no data on purpose

    def to_dict(self) -> dict[str, Any]:
        """The retained `<modality>/state` payload: nulls, never zeros, when there is no data."""
        o = self.primary
        data: dict[str, Any] = {
            "timestamp": utc_timestamp(self.timestamp), "subject_id": o.subject if o else None,
            "track_id": o.subject if o else None, "tracks": self.subjects,
            "label": o.label if o else None, "confidence": rounded(o.confidence) if o else None,
            "valence": rounded(o.valence) if o else None, "arousal": rounded(o.arousal) if o else None,
            "quality": rounded(o.quality) if o else None,
            "model": o.model.get("id") if o else None, "estimator": o.estimator if o else None,
            "paused": self.paused,
        }
        if o is not None:
            data.update({key: value for key, value in o.extra.items() if key in STATE_EXTRAS})
        return data


# Observation details a hub may want in the state (EEG warm-up and rejection, fusion's contributions).
STATE_EXTRAS = ("warming_up", "rejected", "uncalibrated", "contributions", "electrodes")


def box_area(observation: Observation) -> float:
    box = observation.extra.get("box")
    return float(box[2] * box[3]) if box else 0.0  # [x, y, width, height]


class EventPolicy:
    def __init__(self, modality: str, device_id: str, interval_s: float = 0.0, state_interval_s: float = 0.0):
        self.modality, self.device_id = modality, device_id
        self.interval_s, self.state_interval_s = interval_s, state_interval_s
        self._latest: dict[str, Observation] = {}
        self._last_event: dict[str, float] = {}
        self._tracked: set[str] = set()
        self._last_state = -float("inf")

    def event(self, observation: Observation, kind: str | None = None) -> Event:
        o = observation
        model = {"id": str(o.model.get("id", "")), "sha256": str(o.model.get("sha256", "")),
                 "estimator": o.estimator}
        extra = {key: value for key, value in o.extra.items() if key != "contributions"}
        return Event(device_id=self.device_id, modality=o.modality, kind=kind or EVENT_KINDS[o.kind],
                     track_id=o.subject, label=o.label if o.kind == "state" else None,
                     confidence=o.confidence if o.kind == "state" else None,
                     probabilities=dict(o.probabilities or {}) if o.kind == "state" else {},
                     valence=o.valence if o.kind == "state" else None,
                     arousal=o.arousal if o.kind == "state" else None,
                     quality=o.quality if o.kind == "state" else None,
                     contributions=o.extra.get("contributions"), timestamp=utc_timestamp(o.timestamp),
                     model=model, latency_ms=o.latency_ms or 0.0, extra=extra)

    def update(self, observation: Observation, changed: bool) -> tuple[list[Event], State | None]:
        """Events for one smoothed observation, and the modality's state when it is due."""
        o = observation
        events: list[Event] = []
        membership = False
        if o.kind == "start":
            self._latest[o.subject] = o
            self._tracked.add(o.subject)
            events.append(self.event(o))
            membership = True
        elif o.kind == "end":
            last = self._latest.pop(o.subject, None)
            self._last_event.pop(o.subject, None)
            if o.subject in self._tracked:  # a subject that had a start (a face track) gets its end
                self._tracked.discard(o.subject)
                extra = dict(o.extra)
                if "box" not in extra and last is not None and "box" in last.extra:
                    extra["box"] = last.extra["box"]
                events.append(self.event(o.with_(extra=extra)))
            membership = True
        else:
            membership = o.subject not in self._latest
            self._latest[o.subject] = o
            last = self._last_event.get(o.subject)
            due = self.interval_s > 0 and (last is None or o.timestamp - last >= self.interval_s - 1e-9)
            if changed or due:
                self._last_event[o.subject] = o.timestamp
                events.append(self.event(o))
        state = None
        if membership or o.timestamp - self._last_state >= self.state_interval_s - 1e-9:
            self._last_state = o.timestamp
            state = self.state(o.timestamp)
        return events, state

    def state(self, timestamp: float) -> State:
        live = [o for o in self._latest.values() if o.kind == "state"]
        with_data = [o for o in live if o.label is not None or o.has_data]
        primary = max(with_data or live, key=box_area, default=None)
        return State(self.modality, timestamp, primary, len(self._latest))

    def close(self, timestamp: float, paused: bool = False) -> State:
        """The input ended (or was switched off): every subject is gone."""
        self._latest.clear()
        self._last_event.clear()
        self._tracked.clear()
        return State(self.modality, timestamp, None, 0, paused)
