"""Late fusion of face, voice and EEG into one affect state for one person (docs/fusion.md).

Each modality already gives valence, arousal, a confidence and a quality per subject; fusion keeps the
latest smoothed observation of each and combines them as a weighted mean, each weighted by
base weight x confidence x quality x freshness (freshness falls linearly from 1 at capture to 0 at the
modality's max_age_s). Late fusion because the modalities run at different rates, drop out on their
own (no face in view, silence, an EEG artefact) and some only give an uncalibrated index: a weighted
mean lets any subset speak, and its weights say who spoke.

One fused subject: the person the device is about (the headband's wearer, the face bound to them by a
rule, the room's voice). Pure and synchronous: the caller feeds observations (`update`) and the time
(`tick`); nothing here reads a clock, so the same inputs give the same output.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from .errors import EdgeError
from .observation import Observation, rounded

MODALITIES = ("face", "voice", "eeg")
BINDING_RULES = ("largest", "central")
FUSED = "fused"

# Fused labels name eight 45-degree sectors of the circumplex (angle of (valence, arousal) from the valence
# axis, counter-clockwise), after the eight octants of Russell (1980): pleasure, excitement, arousal, distress,
# misery, depression, sleepiness, contentment. Names are chosen so that the face model's classes land in the
# sector of the same or the closest name (edge.affect: happy 32 deg, surprise 76, angry/fear/disgust 131-150,
# sad 203, calm 307). A point within `neutral_radius` of the centre is "neutral".
SECTORS = ("pleased", "happy", "alert", "distressed", "unhappy", "sad", "tired", "calm")
LABEL_RADIUS = 0.7  # coordinate given to a sector label: its centre direction at this distance from (0, 0)
FUSED_CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    **{name: (round(LABEL_RADIUS * math.cos(k * math.pi / 4), 4) + 0.0,
              round(LABEL_RADIUS * math.sin(k * math.pi / 4), 4) + 0.0)
       for k, name in enumerate(SECTORS)},
}
# Largest weighted RMS distance of points in [-1, 1]^2 from their weighted mean (two equal weights at opposite
# corners): agreement = 1 - spread / MAX_SPREAD is 1 when all modalities agree and 0 at the worst contradiction.
MAX_SPREAD = math.sqrt(2.0)
MODEL = {"id": "late-fusion-1", "sha256": ""}  # names the rule (docs/fusion.md) in events and state


@dataclass
class FusionConfig:
    SECTION: ClassVar[str] = "fusion"

    enabled: bool = True  # fuse face, voice and EEG into one affect state (modality "fused") for `subject`
    subject: str = "wearer"  # id of the fused subject: the person wearing the headband / bound to the camera
    # base weight of the face in [0, 1], multiplied by confidence x quality x freshness (0 leaves it out);
    # the base weights are priors, not fitted: there is no multimodal ground truth on the device (docs/fusion.md)
    face_weight: float = 1.0
    voice_weight: float = 0.7  # base weight of voice in [0, 1]: its model has 4 acted classes and no neutral
    eeg_weight: float = 0.7  # base weight of EEG in [0, 1]: an uncalibrated index reports a low confidence itself
    face_max_age_s: float = 2.0  # seconds a face observation counts (freshness 1 at capture, 0 at this age)
    voice_max_age_s: float = 6.0  # seconds a voice observation counts: one 2.5 s window a second, none in silence
    eeg_max_age_s: float = 5.0  # seconds an EEG observation counts (freshness 1 at capture, 0 at this age)
    # which face track is the subject's: "largest" box, most "central" box, or a track id prefix (the largest
    # track whose subject starts with it); kept until that track ends or ages out, then chosen again
    face_binding: str = "largest"
    voice_subject: str = ""  # only this voice subject counts ("" = any; the microphone is "room")
    eeg_subject: str = ""  # only this EEG subject counts ("" = any headband; the wearer is "wearer")
    neutral_radius: float = 0.2  # a fused (valence, arousal) closer than this to (0, 0) is labelled "neutral"
    min_confidence: float = 0.25  # below this fused confidence the label is None (uncertain); valence/arousal stay
    # how often the retained fused/state is refreshed (and at once when the fused subject appears)
    state_interval_s: float = 1.0

    def validate(self) -> FusionConfig:
        if not isinstance(self.enabled, bool):
            _bad("enabled", self.enabled, "true or false")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(self.subject)):
            _bad("subject", self.subject, "1-64 letters, digits, '-' or '_' (it is part of MQTT topics)")
        for modality in MODALITIES:
            weight, age = f"{modality}_weight", f"{modality}_max_age_s"
            if not _number(getattr(self, weight)) or not 0.0 <= getattr(self, weight) <= 1.0:
                _bad(weight, getattr(self, weight), "a number in [0, 1] (0 leaves the modality out)")
            if not _number(getattr(self, age)) or not getattr(self, age) > 0.0:
                _bad(age, getattr(self, age), "a positive number of seconds")
        if self.enabled and not any(self.weight(m) > 0 for m in MODALITIES):
            _bad("face_weight", self.face_weight, "above 0 for at least one modality (or set fusion.enabled = false)")
        if not isinstance(self.face_binding, str) or not self.face_binding:
            _bad("face_binding", self.face_binding, "\"largest\", \"central\" or a face track id prefix such as "
                 "\"face-\"")
        for key in ("voice_subject", "eeg_subject"):
            if not isinstance(getattr(self, key), str):
                _bad(key, getattr(self, key), "a subject id, or \"\" for any")
        if not _number(self.neutral_radius) or not 0.0 <= self.neutral_radius < MAX_SPREAD:
            _bad("neutral_radius", self.neutral_radius, "a distance in [0, 1.41) on the valence/arousal plane")
        if not _number(self.min_confidence) or not 0.0 <= self.min_confidence <= 1.0:
            _bad("min_confidence", self.min_confidence, "a number in [0, 1]")
        if not _number(self.state_interval_s) or not self.state_interval_s > 0.0:
            _bad("state_interval_s", self.state_interval_s, "a positive number of seconds")
        return self

    def weight(self, modality: str) -> float:
        return getattr(self, f"{modality}_weight")

    def max_age(self, modality: str) -> float:
        return getattr(self, f"{modality}_max_age_s")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bad(key: str, value: Any, expected: str) -> None:
    raise EdgeError(f"fusion.{key} = {value!r} is not valid: expected {expected}")


def _weighted_mean(pairs: list[tuple[float, float | None]]) -> float | None:
    """Mean of the values that exist, by weight; None when none does."""
    known = [(w, v) for w, v in pairs if v is not None]
    total = sum(w for w, _ in known)
    return sum(w * v for w, v in known) / total if total > 0 else None


def circumplex_label(valence: float, arousal: float, neutral_radius: float) -> str:
    """The fused label of a point: "neutral" near the centre, else the name of its 45-degree sector."""
    if math.hypot(valence, arousal) < neutral_radius:
        return "neutral"
    angle = math.atan2(arousal, valence)
    return SECTORS[round(angle / (math.pi / 4)) % len(SECTORS)]


def box_of(observation: Observation) -> tuple[float, float, float, float] | None:
    """extra["box"] = [x, y, w, h] in pixels, or None when absent or malformed."""
    box = observation.extra.get("box") if isinstance(observation.extra, Mapping) else None
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_number(v) for v in box):
        return None
    return tuple(float(v) for v in box)


def centre_distance(observation: Observation) -> float:
    """Distance of the box centre from the frame centre, in frame widths/heights; inf without box or frame."""
    box = box_of(observation)
    frame = observation.extra.get("frame") if isinstance(observation.extra, Mapping) else None
    if box is None or not isinstance(frame, (list, tuple)) or len(frame) != 2 \
            or not all(_number(v) and v > 0 for v in frame):
        return math.inf
    x, y, w, h = box
    return math.hypot((x + w / 2) / frame[0] - 0.5, (y + h / 2) / frame[1] - 0.5)


def box_area(observation: Observation) -> float:
    box = box_of(observation)
    return 0.0 if box is None else max(box[2], 0.0) * max(box[3], 0.0)


class Fusion:
    """Latest observation per modality (per face track), the face bound to the subject, and their fusion.

    Not thread-safe: call `update` and `tick` from one thread (the fusion's bus subscriber)."""

    def __init__(self, config: FusionConfig | None = None):
        self.config = (config or FusionConfig()).validate()
        self._faces: dict[str, Observation] = {}  # live face tracks, latest observation each, oldest track first
        self._latest: dict[str, Observation] = {}  # voice / eeg: the latest observation that counts
        self.bound_face: str | None = None
        self._aged_face: Observation | None = None  # the bound track's last observation after it aged out
        self._now = -math.inf
        self._signature: tuple | None = None  # (contributing modalities, bound face) of the last fused output
        self.fused = 0

    def update(self, observation: Observation) -> list[Observation]:
        """Take one smoothed observation; the fused observation of the subject it affects ([] if none)."""
        modality = observation.modality
        if modality not in MODALITIES or self.config.weight(modality) <= 0:
            return []
        self._now = max(self._now, observation.timestamp)
        if modality == "face":
            affected = self._update_face(observation)
        else:
            wanted = getattr(self.config, f"{modality}_subject")
            if wanted and observation.subject != wanted:
                return []
            previous = self._latest.get(modality)
            if observation.kind == "end":
                affected = previous is not None and previous.subject == observation.subject
                if affected:
                    del self._latest[modality]
            elif previous is not None and observation.timestamp < previous.timestamp:
                return []  # captured before what we already hold: late, not news
            else:
                self._latest[modality] = observation
                affected = True
        return [self._emit(observation.latency_ms)] if affected else []

    def tick(self, now: float) -> list[Observation]:
        """Re-evaluate ageing at `now` (Unix seconds): the fused observation if a modality aged out or the face
        was rebound since the last fused output, else []."""
        self._now = max(self._now, now)
        self._drop_stale_faces()
        if self.bound_face is None:
            self._bind()
        if self._signature is not None and self._current_signature() == self._signature:
            return []
        if self._signature is None and not self._faces and not self._latest:
            return []  # nothing has ever been seen: no state to report a change of
        return [self._emit(None)]

    def _update_face(self, observation: Observation) -> bool:
        """Keep the track's latest observation; True when the fused state is affected (the bound track spoke,
        or the binding changed)."""
        subject, before = observation.subject, self.bound_face
        if observation.kind == "end":
            if self._faces.pop(subject, None) is None:
                return False
            if subject == before:
                self.bound_face, self._aged_face = None, None  # ended: absent, not stale
        else:
            previous = self._faces.get(subject)
            if previous is not None and observation.timestamp < previous.timestamp:
                return False  # captured before what we already hold
            self._faces[subject] = observation
        self._drop_stale_faces()
        if self.bound_face is None:
            self._bind()
        return self.bound_face != before or (observation.kind != "end" and subject == self.bound_face)

    def _drop_stale_faces(self) -> None:
        """Forget tracks whose latest observation is past face_max_age_s (a track that ended without "end")."""
        limit = self.config.face_max_age_s
        for subject in [s for s, o in self._faces.items() if self._now - o.timestamp >= limit]:
            observation = self._faces.pop(subject)
            if subject == self.bound_face:
                self.bound_face, self._aged_face = None, observation

    def _bind(self) -> None:
        rule, candidates = self.config.face_binding, list(self._faces.values())
        if rule not in BINDING_RULES:
            candidates = [o for o in candidates if o.subject.startswith(rule)]
        if not candidates:
            self.bound_face = None
            return
        self._aged_face = None
        if rule == "central":  # min/max keep the first of equals: the oldest track wins a tie
            chosen = min(candidates, key=centre_distance)
        else:
            chosen = max(candidates, key=box_area)
        self.bound_face = chosen.subject

    def _current(self, modality: str) -> Observation | None:
        if modality == "face":  # the bound track, else the one that aged out (listed as stale)
            return self._faces[self.bound_face] if self.bound_face is not None else self._aged_face
        return self._latest.get(modality)

    def _assess(self, modality: str) -> tuple[float, str, Observation | None, float | None]:
        """(raw weight, status, observation, age) of one modality at the current time."""
        cfg = self.config
        observation = self._current(modality)
        if cfg.weight(modality) <= 0:
            return 0.0, "disabled", None, None
        if observation is None:
            return 0.0, "absent", None, None
        age = max(self._now - observation.timestamp, 0.0)
        if age >= cfg.max_age(modality):
            return 0.0, "stale", observation, age
        if observation.valence is None and observation.arousal is None:
            return 0.0, "no_data", observation, age
        if observation.confidence is None or observation.quality is None:
            return 0.0, "unrated", observation, age
        freshness = 1.0 - age / cfg.max_age(modality)
        weight = cfg.weight(modality) * observation.confidence * observation.quality * freshness
        return weight, ("contributing" if weight > 0 else "zero_weight"), observation, age

    def _current_signature(self) -> tuple:
        contributing = frozenset(m for m in MODALITIES if self._assess(m)[0] > 0)
        return contributing, self.bound_face

    def _emit(self, latency_ms: float | None) -> Observation:
        fused = self.fuse()
        self._signature = self._current_signature()
        self.fused += 1
        return fused.with_(latency_ms=latency_ms)

    def fuse(self) -> Observation:
        """The fused state at the current time (see docs/fusion.md for the formula)."""
        assessed = {m: self._assess(m) for m in MODALITIES}
        total = sum(weight for weight, *_ in assessed.values())
        contributions: dict[str, dict[str, Any]] = {}
        for modality, (weight, status, observation, age) in assessed.items():
            listed = observation is not None and status not in ("stale", "absent", "disabled")
            contributions[modality] = {
                "weight": round(weight / total, 4) if total > 0 else 0.0,
                "valence": rounded(observation.valence) if listed else None,
                "arousal": rounded(observation.arousal) if listed else None,
                "confidence": rounded(observation.confidence) if listed else None,
                "age_s": rounded(age, 3),
                "subject": observation.subject if observation is not None else None,
                "status": status,
            }
        valence = arousal = confidence = quality = label = None
        extra: dict[str, Any] = {"contributions": contributions, "support": None, "agreement": None,
                                 "face_binding": self.config.face_binding}
        if total > 0:
            parts = [(w, o) for w, _, o, _ in assessed.values() if w > 0]
            # each dimension from the modalities that measure it (voice may give arousal alone)
            valence = _weighted_mean([(w, o.valence) for w, o in parts])
            arousal = _weighted_mean([(w, o.arousal) for w, o in parts])
            quality = sum(w * o.quality for w, o in parts) / total
            squares = [w * sum((value - mean) ** 2 for value, mean in ((o.valence, valence), (o.arousal, arousal))
                               if value is not None) for w, o in parts]
            spread = math.sqrt(sum(squares) / total)
            agreement = max(0.0, 1.0 - spread / MAX_SPREAD)
            support = 1.0 - math.prod(1.0 - w for w, _ in parts)  # noisy-or: each w is in [0, 1]
            confidence = min(max(support * agreement, 0.0), 1.0)
            if confidence >= self.config.min_confidence and valence is not None and arousal is not None:
                label = circumplex_label(valence, arousal, self.config.neutral_radius)
            extra.update(support=round(support, 4), agreement=round(agreement, 4))
        return Observation(modality=FUSED, subject=self.config.subject, timestamp=self._now, kind="state",
                           label=label, valence=valence, arousal=arousal, confidence=confidence, quality=quality,
                           estimator="fusion", model=MODEL, extra=extra)
