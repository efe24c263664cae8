"""Every fatal input error at start-up, per input kind: `emotion-edge run` exits 2 with one line naming the input
and the fix, and no traceback (issue 16: these used to end in "cannot join thread before it is started", exit 1).

Each case runs the real CLI as a subprocess on a real broken input. The read-only data dir is in
test_storage_faults.py (it needs a read-only mount)."""

from __future__ import annotations

import os
import re
import shutil
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.demo import build_demo_video
from edge.eeg.simulator import LABELS, make_outlet

from .runtime_helpers import finish, start_runtime

ERROR_LINE = re.compile(r"^emotion-edge: error:|\bERROR\b")


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    return build_demo_video(tmp_path_factory.mktemp("video") / "demo.avi")


def base_config(tmp_path: Path, **sections) -> dict:
    """A config whose only fault is the one a case adds; no modality is on unless the case turns it on."""
    config = {
        "device": {"id": "testdev", "data_dir": str(tmp_path / "data"), "health_interval_s": 0.5},
        "face": {"enabled": False},
        "mqtt": {"host": "127.0.0.1", "port": 1, "reconnect_min_delay_s": 0.2, "reconnect_max_delay_s": 1.0,
                 "connect_timeout_s": 1.0},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


def face_config(tmp_path: Path, models: Path, source: str, **camera) -> dict:
    return base_config(tmp_path, face={"enabled": True, "models": str(models)},
                       camera={"source": source, "on_end": "stop", "realtime": False, **camera})


def assert_one_clear_line(tmp_path: Path, config: dict, *needles: str, env: dict | None = None) -> str:
    """Run the CLI on `config`: exit 2, no traceback, exactly one error line, and it contains every needle."""
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        process = start_runtime(tmp_path, config)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    _, err = finish(process, timeout=120)
    errors = [line for line in err.splitlines() if ERROR_LINE.search(line)]
    assert process.returncode == 2, f"exit {process.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert len(errors) == 1, "\n".join(errors) or err[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# -- camera ---------------------------------------------------------------------------------------------------

def test_camera_zero_byte_file(face_models, tmp_path):
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    assert_one_clear_line(tmp_path, face_config(tmp_path, face_models, str(empty)), "camera.source", str(empty))


def test_camera_file_that_is_not_a_video(face_models, tmp_path):
    notes = tmp_path / "notes.avi"
    notes.write_text("this is a shopping list, not a video\n" * 200)
    assert_one_clear_line(tmp_path, face_config(tmp_path, face_models, str(notes)), "camera.source", "convert")


def test_camera_missing_device_when_not_waiting_for_it(face_models, tmp_path):
    """A missing /dev/video9 is retried in the background by default (a USB camera may come later); with
    camera.wait_for_device = false it is fatal at start."""
    assert_one_clear_line(tmp_path, face_config(tmp_path, face_models, "/dev/video9", wait_for_device=False),
                          "camera.source", "/dev/video9", "wait_for_device")


@pytest.mark.skipif(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER), reason="this OpenCV has GStreamer")
def test_camera_gstreamer_pipeline_without_gstreamer(face_models, tmp_path):
    config = face_config(tmp_path, face_models, "videotestsrc ! videoconvert ! appsink")
    assert_one_clear_line(tmp_path, config, "camera.source", "GStreamer", "picamera2")


# -- audio ----------------------------------------------------------------------------------------------------

def voice_config(tmp_path: Path, models: Path, path: Path) -> dict:
    return base_config(tmp_path, voice={"enabled": True, "source": "file", "models": str(models)},
                       audio_file={"path": str(path), "realtime": False})


def missing_wav(tmp_path: Path) -> Path:
    return tmp_path / "nothing.wav"


def video_as_wav(tmp_path: Path, video: Path) -> Path:
    fake = tmp_path / "speech.wav"
    shutil.copy(video, fake)  # a real file of another kind (a video) under a .wav name
    return fake


def empty_wav(tmp_path: Path) -> Path:
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
    return empty


AUDIO_CASES = [(missing_wav, "audio_file.path"), (video_as_wav, "WAV"), (empty_wav, "audio_file.path")]
AUDIO_IDS = ["missing", "not-a-wav", "no-frames"]


@pytest.mark.parametrize("make, fix", AUDIO_CASES, ids=AUDIO_IDS)
def test_audio_file(voice_models, demo_video, tmp_path, make, fix):
    path = make(tmp_path) if make is not video_as_wav else make(tmp_path, demo_video)
    assert_one_clear_line(tmp_path, voice_config(tmp_path, voice_models, path), str(path), fix)


# -- LSL ------------------------------------------------------------------------------------------------------

def eeg_config(tmp_path: Path, **lsl) -> dict:
    """EEG only, bound to a source_id of this test's own, so another stream on this host is never picked up."""
    return base_config(tmp_path, eeg={"enabled": True},
                       lsl={"source_id": f"startup-{os.getpid()}-{tmp_path.name}", "resolve_timeout_s": 0.5,
                            "backoff_initial_s": 0.1, "backoff_max_s": 0.5, **lsl})


def test_lsl_library_named_by_pylsl_lib_is_missing(tmp_path):
    """pylsl itself skips a PYLSL_LIB that does not exist and quietly loads another liblsl."""
    missing = tmp_path / "lib" / "liblsl.so"
    assert_one_clear_line(tmp_path, eeg_config(tmp_path), "PYLSL_LIB", str(missing),
                          env={"PYLSL_LIB": str(missing)})


def test_lsl_library_named_by_pylsl_lib_is_not_a_library(tmp_path):
    junk = tmp_path / "liblsl.so"
    junk.write_bytes(b"\x7fELF but not really" * 100)
    assert_one_clear_line(tmp_path, eeg_config(tmp_path), "PYLSL_LIB", "liblsl", env={"PYLSL_LIB": str(junk)})


def test_lsl_stream_with_the_wrong_channel_count(tmp_path):
    """The configured stream is there but has 3 channels: fatal once it is found, naming lsl.channel_count."""
    sid = f"startup-wrong-{os.getpid()}"
    outlet = make_outlet("Wrong", sid, 256.0, LABELS[:3], 12)
    try:
        assert_one_clear_line(tmp_path, eeg_config(tmp_path, source_id=sid), "3 channels", "lsl.channel_count")
    finally:
        del outlet


def test_lsl_config_value(tmp_path):
    assert_one_clear_line(tmp_path, eeg_config(tmp_path, nominal_rate=0), "lsl.nominal_rate")


# -- models ---------------------------------------------------------------------------------------------------

def test_model_directory_missing(demo_video, tmp_path):
    missing = tmp_path / "no-models"
    assert_one_clear_line(tmp_path, face_config(tmp_path, missing, str(demo_video)), "face.models", str(missing),
                          "emotion-export")


def copy_models(models: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(models, target)
    return target


def emotion_artifact(models: Path) -> Path:
    from edge.face.config import FaceConfig

    return models / FaceConfig().emotion


@pytest.mark.parametrize("manifest_agrees", [False, True], ids=["hash-mismatch", "hash-matches"])
def test_model_file_of_garbage_bytes(face_models, demo_video, tmp_path, manifest_agrees):
    """Garbage where the emotion model should be; with `manifest_agrees` the manifest's sha256 is of the
    garbage too (a broken export), so the backend itself must refuse it in one line."""
    import json

    from edge.manifest import manifest_path, sha256_file

    models = copy_models(face_models, tmp_path)
    artifact = emotion_artifact(models)
    artifact.write_bytes(np.random.default_rng(16).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    if manifest_agrees:
        path = manifest_path(artifact)
        manifest = json.loads(path.read_text())
        manifest["artifact"]["sha256"] = sha256_file(artifact)
        path.write_text(json.dumps(manifest))
    assert_one_clear_line(tmp_path, face_config(tmp_path, models, str(demo_video)), str(artifact),
                          "emotion-export")


def test_model_of_the_wrong_task(face_models, demo_video, tmp_path):
    """face.emotion naming the face detector: a real model, of another task."""
    from edge.face.config import FaceConfig

    config = face_config(tmp_path, face_models, str(demo_video))
    config["face"]["emotion"] = FaceConfig().detector
    assert_one_clear_line(tmp_path, config, "face.emotion", "face_detection", "set face.emotion")


# -- data dir -------------------------------------------------------------------------------------------------

def test_data_dir_whose_parent_cannot_be_created(face_models, demo_video, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = face_config(tmp_path, face_models, str(demo_video))
    config["device"]["data_dir"] = str(blocker / "data")
    assert_one_clear_line(tmp_path, config, str(blocker / "data"), "device.data_dir")


def test_data_dir_under_proc(face_models, demo_video, tmp_path):
    """A parent nobody can create, root included."""
    config = face_config(tmp_path, face_models, str(demo_video))
    config["device"]["data_dir"] = "/proc/emotion-edge-test/data"
    assert_one_clear_line(tmp_path, config, "/proc/emotion-edge-test/data", "device.data_dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_data_dir_in_a_directory_this_user_cannot_write(face_models, demo_video, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    config = face_config(tmp_path, face_models, str(demo_video))
    config["device"]["data_dir"] = str(locked / "data")
    assert_one_clear_line(tmp_path, config, str(locked / "data"), "device.data_dir")
