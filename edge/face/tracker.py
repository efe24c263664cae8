"""Stable ids for faces across frames, so smoothing and events follow one person.

Greedy association: first by IoU of each track's motion-predicted box with the detections,
then, for what is left, by centre distance relative to the track's size (a fast move or a
detector jitter can leave no overlap). A candidate becomes a track, and gets its id, after
`min_hits` consecutive detections; a track ends after `max_missed` frames or `max_age_s`
seconds without one. Ids ("f1", "f2", ...) are never reused within a process.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import EdgeError

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels

_track_ids = itertools.count(1)


@dataclass
class TrackerConfig:
    # minimum IoU between a track's predicted box and a detection to match them
    iou_threshold: float = 0.3
    # fallback match: largest centre distance, as a fraction of the track box's diagonal
    max_centre_distance: float = 0.6
    # consecutive detections before a candidate becomes a track (gets an id, emits track_start)
    min_hits: int = 3
    # frames in a row without a detection before a track ends
    max_missed: int = 10
    # seconds without a detection before a track ends, whatever the frame rate
    max_age_s: float = 2.0
    # weight of the newest motion step in the velocity estimate (0 turns motion prediction off)
    velocity_alpha: float = 0.5

    def validate(self) -> None:
        checks = (
            ("iou_threshold", 0.0 < self.iou_threshold <= 1.0, "a number in (0, 1]"),
            ("max_centre_distance", self.max_centre_distance >= 0.0, "a number >= 0"),
            ("min_hits", isinstance(self.min_hits, int) and self.min_hits >= 1, "a whole number >= 1"),
            ("max_missed", isinstance(self.max_missed, int) and self.max_missed >= 0, "a whole number >= 0"),
            ("max_age_s", self.max_age_s > 0.0, "a number of seconds > 0"),
            ("velocity_alpha", 0.0 <= self.velocity_alpha <= 1.0, "a number in [0, 1]"),
        )
        for key, ok, wanted in checks:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok:
                raise EdgeError(f"tracker.{key} must be {wanted}, not {value!r}")


@dataclass
class _Track:
    box: Box
    payload: Any
    last_seen: float
    track_id: str | None = None  # None while still a candidate
    hits: int = 1
    missed: int = 0
    velocity: Box = (0.0, 0.0, 0.0, 0.0)  # box change per second

    def predicted(self, t: float) -> Box:
        dt = max(0.0, t - self.last_seen)
        return tuple(b + v * dt for b, v in zip(self.box, self.velocity))


@dataclass
class TrackUpdate:
    """What one frame changed."""

    tracks: list[tuple[str, Box, Any]]  # (track_id, box, payload) for tracks detected in this frame
    started: list[str]  # ids that became tracks in this frame
    ended: list[str]  # ids that ended in this frame


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a (N, 4) and b (M, 4)."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _iou(a: Box, b: Box) -> float:
    """box_iou for one pair, in plain floats: a frame has a few faces, where numpy's per-call cost dominates."""
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-9) if union > 0 else 0.0


def _greedy(scores: list[tuple[float, int, int]], accept, order_desc: bool) -> list[tuple[int, int]]:
    """Best-first one-to-one pairs (row, col) of (score, row, col) entries whose score passes `accept`;
    ties go to the earlier entry."""
    rows, cols, pairs = set(), set(), []
    for score, r, c in sorted(scores, key=lambda entry: -entry[0] if order_desc else entry[0]):
        if not accept(score):
            break
        if r in rows or c in cols:
            continue
        rows.add(r)
        cols.add(c)
        pairs.append((r, c))
    return pairs


class FaceTracker:
    """Associates per-frame face boxes into tracks with stable ids."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.config.validate()
        self._tracks: list[_Track] = []

    @property
    def active_ids(self) -> list[str]:
        return [track.track_id for track in self._tracks if track.track_id is not None]

    def update(self, boxes: Sequence[Sequence[float]], payloads: Sequence[Any] | None = None,
               t: float | None = None) -> TrackUpdate:
        """Feed one frame's detections (x0, y0, x1, y1) with optional per-box payloads; `t` is the capture time."""
        cfg = self.config
        now = time.time() if t is None else float(t)
        boxes = [tuple(float(v) for v in box) for box in boxes]
        if any(len(box) != 4 for box in boxes):
            raise ValueError("each box needs 4 values: x0, y0, x1, y1")
        if payloads is None:
            payloads = [None] * len(boxes)
        if len(payloads) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(payloads)} payloads")
        kept = [(box, payload) for box, payload in zip(boxes, payloads)
                if all(map(math.isfinite, box)) and box[2] > box[0] and box[3] > box[1]]
        dets, payloads = [box for box, _ in kept], [payload for _, payload in kept]

        matches = self._associate(dets, now)
        matched_tracks = {ti for ti, _ in matches}
        matched_dets = {di for _, di in matches}
        started, ended, output = [], [], []

        alpha = cfg.velocity_alpha
        for ti, di in matches:
            track = self._tracks[ti]
            dt = now - track.last_seen
            if dt > 0 and alpha > 0:
                track.velocity = tuple((1 - alpha) * v + alpha * ((d - b) / dt)
                                       for v, d, b in zip(track.velocity, dets[di], track.box))
            track.box, track.payload, track.last_seen = dets[di], payloads[di], now
            track.hits += 1
            track.missed = 0

        survivors = []
        for ti, track in enumerate(self._tracks):
            if ti not in matched_tracks:
                track.missed += 1
                expired = track.missed > cfg.max_missed or now - track.last_seen > cfg.max_age_s
                if track.track_id is None or expired:
                    # Candidates die on their first miss, so a one-off false detection never gets an id.
                    if track.track_id is not None:
                        ended.append(track.track_id)
                    continue
            survivors.append(track)
        for di in range(len(dets)):
            if di not in matched_dets:
                survivors.append(_Track(box=dets[di], payload=payloads[di], last_seen=now))
        self._tracks = survivors

        for track in self._tracks:
            if track.track_id is None and track.hits >= cfg.min_hits:
                track.track_id = f"f{next(_track_ids)}"
                started.append(track.track_id)
            if track.track_id is not None and track.missed == 0:
                output.append((track.track_id, track.box, track.payload))
        return TrackUpdate(tracks=output, started=started, ended=ended)

    def end_all(self) -> list[str]:
        """End every track (source stopped or switched); returns the ids that ended."""
        ended = self.active_ids
        self._tracks = []
        return ended

    def _associate(self, dets: list[Box], now: float) -> list[tuple[int, int]]:
        if not self._tracks or not dets:
            return []
        cfg = self.config
        predicted = [track.predicted(now) for track in self._tracks]
        # Established tracks win ties against candidates.
        iou = [(_iou(p, d) + (1e-6 if track.track_id is not None else 0.0), r, c)
               for r, (p, track) in enumerate(zip(predicted, self._tracks)) for c, d in enumerate(dets)]
        matches = _greedy(iou, lambda s: s >= cfg.iou_threshold, order_desc=True)
        matched_t, matched_d = {m[0] for m in matches}, {m[1] for m in matches}
        rest_t = [i for i in range(len(self._tracks)) if i not in matched_t]
        rest_d = [j for j in range(len(dets)) if j not in matched_d]
        if rest_t and rest_d and cfg.max_centre_distance > 0:
            distance = []
            for r, ti in enumerate(rest_t):
                p = predicted[ti]
                cx, cy = (p[0] + p[2]) / 2, (p[1] + p[3]) / 2
                diagonal = max(math.hypot(p[2] - p[0], p[3] - p[1]), 1e-9)
                for c, di in enumerate(rest_d):
                    d = dets[di]
                    offset = math.hypot(cx - (d[0] + d[2]) / 2, cy - (d[1] + d[3]) / 2)
                    distance.append((offset / diagonal, r, c))
            for r, c in _greedy(distance, lambda s: s <= cfg.max_centre_distance, order_desc=False):
                matches.append((rest_t[r], rest_d[c]))
        return matches
