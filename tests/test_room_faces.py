"""Room-scale faces: the living-room profile's detector against the kiosk's on held-out group scenes.

Scenes as benchmarks/room_faces.py builds them (export.facedata.room_scenes, faces at 6 to 12% of a 640x480
frame), fewer and with their own seed; the detectors are built from the profile files as the runtime builds
them, on the artifacts `emotion-export face` writes (both detectors by default).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edge.config import load_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from room_faces import KIOSK, ROOM, detector_for, match  # noqa: E402

from export.facedata import room_scenes  # noqa: E402


def recall(detector, scenes) -> float:
    hits = [hit for scene in scenes for hit in match(scene.faces, detector.detect(scene.image))[0]]
    return sum(hits) / len(hits)


@pytest.fixture(scope="module")
def head_scenes():
    """Head-and-shoulders faces (with the context a camera sees), 12 frames, 4 to 10 faces each."""
    return room_scenes(seed=11, count=12, kind="heads")


def test_room_profile_runs_the_full_range_int8_detector_for_a_room(face_models):
    room, kiosk = load_config(ROOM).face, load_config(KIOSK).face
    assert room.detector == "detector_full.int8.tflite" and kiosk.detector == "detector.int8.tflite"
    assert room.max_faces >= 8 and kiosk.max_faces == 3
    assert room.min_face_size <= 0.06 * 640 * 0.5  # a 6%-of-width face's box is about 0.8 of it
    detector, _ = detector_for(face_models, ROOM)
    assert detector.input_size == 192 and detector.model.manifest.data["precision"] == "int8"


def test_room_profile_finds_far_more_small_faces_than_the_kiosk(face_models, head_scenes):
    """On these scenes 35% against 11% (the benchmark's 40 scenes: 40.5% against 13.5%)."""
    room = recall(detector_for(face_models, ROOM)[0], head_scenes)
    kiosk = recall(detector_for(face_models, KIOSK)[0], head_scenes)
    assert sum(len(scene.faces) for scene in head_scenes) >= 50
    assert room >= 0.25 and room >= 2 * kiosk, (room, kiosk)


@pytest.mark.xfail(strict=True, reason="not met: BlazeFace full-range at its 192 px input finds about 40% of "
                                       "faces at 6-12% of a 640 px frame (docs/benchmarks.md, Room-scale faces)")
def test_room_profile_meets_the_95_percent_recall_bar(face_models, head_scenes):
    room = recall(detector_for(face_models, ROOM)[0], head_scenes)
    assert room >= 0.95, room
