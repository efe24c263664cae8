"""Face tracker: stable ids for moving, crossing and adjacent faces; starts and ends reported."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import EdgeError
from edge.face.tracker import FaceTracker, TrackerConfig, box_iou

FPS = 10.0


def box(cx: float, cy: float, size: float = 60.0):
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


def run(tracker: FaceTracker, frames, start: float = 0.0):
    """Feed frames (lists of (box, payload)); return each frame's {payload: track_id} and the updates."""
    seen, updates = [], []
    for i, detections in enumerate(frames):
        update = tracker.update([d[0] for d in detections], [d[1] for d in detections], t=start + i / FPS)
        updates.append(update)
        seen.append({payload: track_id for track_id, _, payload in update.tracks})
    return seen, updates


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], dtype=float)
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150], [0.0, 0.0]])


def test_smoothly_moving_face_keeps_one_id_and_starts_after_min_hits():
    tracker = FaceTracker(TrackerConfig(min_hits=3))
    frames = [[(box(100 + 8 * i, 200 + 3 * i), "a")] for i in range(40)]
    seen, updates = run(tracker, frames)
    assert seen[0] == {} and seen[1] == {}  # still a candidate
    track_id = seen[2]["a"]
    assert updates[2].started == [track_id]
    assert all(s == {"a": track_id} for s in seen[2:])
    assert sum(len(u.started) for u in updates) == 1 and all(not u.ended for u in updates)
    assert track_id.startswith("f") and track_id[1:].isdigit()


def test_fast_face_without_overlap_is_kept_by_centre_distance_and_motion():
    tracker = FaceTracker(TrackerConfig(min_hits=1))
    # 40 px per frame with 60 px boxes: consecutive boxes overlap little (IoU 0.2 < 0.3).
    seen, _ = run(tracker, [[(box(50 + 40 * i, 100), "a")] for i in range(15)])
    assert len({s["a"] for s in seen}) == 1


def test_two_crossing_faces_keep_their_ids():
    tracker = FaceTracker(TrackerConfig(min_hits=2))
    frames = []
    for i in range(30):
        left_to_right = box(100 + 10 * i, 200)
        # Nearly the same height: around frame 14-15 they cover each other almost fully, and
        # without motion prediction the ids swap there.
        right_to_left = box(390 - 10 * i, 205)
        frames.append([(left_to_right, "L"), (right_to_left, "R")])
    seen, updates = run(tracker, frames)
    ids_l = {s["L"] for s in seen[1:]}
    ids_r = {s["R"] for s in seen[1:]}
    assert len(ids_l) == 1 and len(ids_r) == 1 and ids_l != ids_r
    assert all(not u.ended for u in updates)


def test_adjacent_jittering_faces_keep_their_ids():
    rng = np.random.default_rng(3)
    tracker = FaceTracker(TrackerConfig(min_hits=1))
    frames = []
    for _ in range(50):
        jitter = rng.normal(0, 3, size=4)
        a = box(200 + jitter[0], 200 + jitter[1])
        b = box(262 + jitter[2], 200 + jitter[3])  # side by side, 2 px apart
        order = [(a, "A"), (b, "B")]
        if rng.random() < 0.5:
            order.reverse()  # detector output order must not matter
        frames.append(order)
    seen, _ = run(tracker, frames)
    assert len({s["A"] for s in seen}) == 1 and len({s["B"] for s in seen}) == 1
    assert seen[0]["A"] != seen[0]["B"]


def test_face_that_leaves_ends_after_max_missed_and_a_new_face_gets_a_new_id():
    tracker = FaceTracker(TrackerConfig(min_hits=2, max_missed=5, max_age_s=100.0))
    frames = [[(box(100, 100), "a")] for _ in range(10)] + [[] for _ in range(8)]
    frames += [[(box(400, 300), "b")] for _ in range(5)]
    seen, updates = run(tracker, frames)
    first = seen[1]["a"]
    ended_at = [i for i, u in enumerate(updates) if u.ended]
    assert ended_at == [15]  # last seen at frame 9, sixth miss at frame 15
    assert updates[15].ended == [first]
    assert seen[10:18] == [{}] * 8  # a missed track is not reported with a stale box
    second = seen[19]["b"]
    assert second != first and updates[19].started == [second]
    assert int(second[1:]) > int(first[1:])
    assert tracker.active_ids == [second]


def test_brief_occlusion_keeps_the_id():
    tracker = FaceTracker(TrackerConfig(min_hits=1, max_missed=5))
    frames = [[(box(100 + 5 * i, 100), "a")] for i in range(10)]
    frames += [[], [], []]
    frames += [[(box(100 + 5 * i, 100), "a")] for i in range(13, 20)]
    seen, updates = run(tracker, frames)
    ids = {s["a"] for s in seen if s}
    assert len(ids) == 1 and all(not u.ended for u in updates)


def test_max_age_ends_a_track_at_low_frame_rate():
    tracker = FaceTracker(TrackerConfig(min_hits=1, max_missed=100, max_age_s=1.0))
    track_id = tracker.update([box(100, 100)], t=0.0).tracks[0][0]
    assert tracker.update([], t=0.5).ended == []
    assert tracker.update([], t=1.6).ended == [track_id]


def test_one_off_false_detection_never_gets_an_id():
    tracker = FaceTracker(TrackerConfig(min_hits=3))
    updates = [tracker.update([box(300, 300)] if i == 2 else [], t=i / FPS) for i in range(6)]
    assert all(not u.started and not u.tracks for u in updates)
    assert tracker.active_ids == []


def test_payload_follows_its_box_and_ids_are_unique_across_trackers():
    probs_a, probs_b = np.array([0.9, 0.1]), np.array([0.2, 0.8])
    one, two = FaceTracker(TrackerConfig(min_hits=1)), FaceTracker(TrackerConfig(min_hits=1))
    update = one.update([box(100, 100), box(300, 100)], [probs_a, probs_b], t=0.0)
    by_box = {b: p for _, b, p in update.tracks}
    assert by_box[box(100, 100)] is probs_a and by_box[box(300, 100)] is probs_b
    other = two.update([box(100, 100)], t=0.0)
    assert other.tracks[0][0] not in {t for t, _, _ in update.tracks}


def test_invalid_boxes_are_ignored_and_end_all_reports_ids():
    tracker = FaceTracker(TrackerConfig(min_hits=1))
    update = tracker.update([(10, 10, 5, 50), (0, 0, float("nan"), 4), box(100, 100)], t=0.0)
    assert len(update.tracks) == 1
    assert tracker.end_all() == [update.tracks[0][0]] and tracker.active_ids == []


@pytest.mark.parametrize("key, value", [("iou_threshold", 0.0), ("min_hits", 0), ("max_missed", -1),
                                        ("max_age_s", 0), ("velocity_alpha", 2), ("min_hits", 1.5)])
def test_config_validation_names_the_key(key, value):
    with pytest.raises(EdgeError, match=rf"tracker\.{key}"):
        TrackerConfig(**{key: value}).validate()
