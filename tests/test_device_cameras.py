"""Device cameras: the Pi Camera Module through picamera2, and GStreamer pipelines on an OpenCV without GStreamer.

picamera2 is apt-only on Raspberry Pi OS and there is no camera here, so its missing-module error and the
GStreamer error are tested for real (through the CLI, as a user meets them), and the capture path with a
stand-in for the one part that cannot run here: the Picamera2 camera object.
"""

from __future__ import annotations

import importlib.util
import time

import cv2
import numpy as np
import pytest

from edge.errors import EdgeError
from edge.sources.base import RECONNECTING, RUNNING
from edge.sources.camera import CameraConfig, CameraSource, source_kind
from edge.sources.pi_camera import PiCameraCapture, camera_class

from .runtime_helpers import run_cli, toml_text, wait_for

HAVE_PICAMERA2 = importlib.util.find_spec("picamera2") is not None


class FakePicamera2:
    """Stands in for picamera2.Picamera2 (camera hardware and libcamera, absent here): records the calls and
    hands out RGB888 buffers, which libcamera lays out as B, G, R bytes per pixel."""

    instances: list["FakePicamera2"] = []

    def __init__(self, frames: list[np.ndarray] | None = None, fail_after: int | None = None):
        self.calls: list[tuple] = []
        self.frames = frames if frames is not None else [_bgr_frame(i) for i in range(3)]
        self.fail_after = fail_after
        self.captured = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main=None, controls=None):
        self.calls.append(("create_video_configuration", main, controls))
        return {"main": main, "controls": controls}

    def configure(self, configuration):
        self.calls.append(("configure", configuration))

    def start(self):
        self.calls.append(("start",))

    def capture_array(self, name="main", wait=None):
        if self.fail_after is not None and self.captured >= self.fail_after:
            raise RuntimeError("camera frontend timeout")
        time.sleep(0.01)  # a camera paces its frames
        frame = self.frames[self.captured % len(self.frames)]
        self.captured += 1
        self.calls.append(("capture_array", name, wait))
        return frame.copy()

    def stop(self):
        self.calls.append(("stop",))

    def close(self):
        self.calls.append(("close",))


def _bgr_frame(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """B, G, R planes with distinct values, so a channel swap (or none) is visible."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10 + seed, 120, 230 - seed  # B, G, R
    return frame


def _source(**camera) -> CameraSource:
    FakePicamera2.instances.clear()
    return CameraSource(CameraConfig(source="picamera2", **camera), camera_class=FakePicamera2)


def test_picamera2_is_its_own_source_kind():
    assert source_kind("picamera2") == "picamera2"
    assert source_kind(" picamera2 ") == "picamera2"


@pytest.mark.skipif(HAVE_PICAMERA2, reason="picamera2 is installed here")
def test_missing_picamera2_names_the_apt_package_and_system_site_packages():
    with pytest.raises(EdgeError) as error:
        camera_class()
    message = str(error.value)
    assert "python3-picamera2" in message and "--system-site-packages" in message and "\n" not in message
    with pytest.raises(EdgeError, match="python3-picamera2"):
        CameraSource(CameraConfig(source="picamera2"))


def _cli_fails_with_one_line(tmp_path, face_models, source: str) -> str:
    """`emotion-edge run` with this camera.source: exit 2, one error line, no traceback, no model loaded."""
    path = tmp_path / "camera.toml"
    path.write_text(toml_text({"device": {"data_dir": str(tmp_path / "data")}, "camera": {"source": source},
                               "face": {"models": str(face_models)}, "mqtt": {"host": "127.0.0.1", "port": 1}}))
    result = run_cli("run", "--config", str(path), timeout=60)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("emotion-edge: error: "), result.stderr
    assert "Traceback" not in result.stderr
    # it fails before the models load and before MQTT starts: nothing else is logged above INFO
    assert not [line for line in result.stderr.splitlines() if " WARNING " in line or " ERROR " in line]
    assert " runs on " not in result.stderr, result.stderr
    return errors[0]


@pytest.mark.skipif(HAVE_PICAMERA2, reason="picamera2 is installed here")
def test_cli_with_picamera2_missing_exits_2_with_one_line(tmp_path, face_models):
    line = _cli_fails_with_one_line(tmp_path, face_models, "picamera2")
    assert "python3-picamera2" in line and "--system-site-packages" in line


@pytest.mark.skipif(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER), reason="this OpenCV has GStreamer")
def test_cli_gstreamer_pipeline_on_opencv_without_gstreamer_exits_2_with_one_line(tmp_path, face_models):
    assert "GStreamer:                   NO" in cv2.getBuildInformation()
    line = _cli_fails_with_one_line(
        tmp_path, face_models, "libcamerasrc ! video/x-raw,width=640,height=480 ! videoconvert ! appsink")
    assert "no GStreamer" in line and 'camera.source = "picamera2"' in line
    assert "JetPack's OpenCV" in line and "--system-site-packages" in line and "/dev/videoN" in line


def test_picamera2_frames_arrive_as_rgb_in_order():
    """RGB888 buffers (B, G, R bytes) come out as the same RGB frames every other camera delivers."""
    frames = [_bgr_frame(i) for i in range(3)]
    source = _source(width=64, height=48, fps=15.0)
    source.start()
    try:
        got = [source.read(timeout=2.0) for _ in range(3)]
    finally:
        source.stop()
    assert all(frame is not None for frame in got)
    assert source.stats()["kind"] == "picamera2"
    for frame in got:
        assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
        assert frame.image.flags["C_CONTIGUOUS"]
        matches = [i for i, bgr in enumerate(frames) if np.array_equal(frame.image, bgr[..., ::-1])]
        assert matches, "a delivered frame is not the camera buffer with B and R swapped"
        assert frame.image[0, 0].tolist()[0] > frame.image[0, 0].tolist()[2]  # R first: 230 - i > 10 + i
    assert [f.index for f in got] == sorted(f.index for f in got)


def test_picamera2_is_configured_from_the_camera_settings_and_closed_on_stop():
    source = _source(width=640, height=480, fps=15.0, read_timeout_s=2.5)
    source.start()
    try:
        assert source.read(timeout=2.0) is not None
    finally:
        source.stop()
    camera = FakePicamera2.instances[0]
    names = [call[0] for call in camera.calls]
    assert names[:3] == ["create_video_configuration", "configure", "start"]
    _, main, controls = camera.calls[0]
    assert main == {"size": (640, 480), "format": "RGB888"}
    assert controls == {"FrameDurationLimits": (66667, 66667)}  # 15 fps: 1/15 s in microseconds, min = max
    assert ("capture_array", "main", 2.5) in camera.calls  # a stalled camera raises instead of blocking stop()
    assert names[-2:] == ["stop", "close"]


def test_picamera2_defaults_leave_size_and_rate_to_the_camera():
    source = _source()
    source.start()
    try:
        assert source.read(timeout=2.0) is not None
    finally:
        source.stop()
    _, main, controls = FakePicamera2.instances[0].calls[0]
    assert main == {"format": "RGB888"} and controls == {}


def test_picamera2_failure_is_closed_and_reopened_with_backoff():
    """A camera that stops delivering is closed, and a new one is opened on the shared reconnect path."""

    class FailingOnce(FakePicamera2):
        def __init__(self):
            super().__init__(fail_after=2 if not FakePicamera2.instances else None)

    FakePicamera2.instances.clear()
    source = CameraSource(CameraConfig(source="picamera2", reconnect_initial_s=0.05), camera_class=FailingOnce)
    source.start()
    try:
        assert wait_for(lambda: len(FakePicamera2.instances) >= 2 and source.stats()["state"] == RUNNING)
        assert source.read(timeout=2.0) is not None
        stats = source.stats()
        assert stats["reconnects"] >= 1 and stats["recoveries"] >= 1
    finally:
        source.stop()
    first = FakePicamera2.instances[0]
    assert [call[0] for call in first.calls][-2:] == ["stop", "close"]


def test_picamera2_that_cannot_open_is_retried_and_stop_interrupts():
    class Busy:
        def __init__(self):
            raise RuntimeError("Failed to acquire camera: Device or resource busy")

    source = CameraSource(CameraConfig(source="picamera2", reconnect_initial_s=0.05), camera_class=Busy)
    source.start()
    try:
        assert wait_for(lambda: source.stats()["state"] == RECONNECTING)
        assert "busy" in source.stats()["last_error"]
    finally:
        started = time.monotonic()
        source.stop()
    assert time.monotonic() - started < 2.0
    with pytest.raises(EdgeError, match="cannot open 'picamera2'"):
        CameraSource(CameraConfig(source="picamera2", wait_for_device=False), camera_class=Busy).start()


def test_picamera2_half_a_size_is_a_config_error():
    with pytest.raises(EdgeError, match="camera.width and camera.height must both be set"):
        CameraConfig(source="picamera2", width=640).validate()


def test_capture_releases_a_camera_it_could_not_start():
    class NoStart(FakePicamera2):
        def start(self):
            raise RuntimeError("Camera frontend has timed out")

    camera = NoStart()
    with pytest.raises(RuntimeError):
        PiCameraCapture(camera, 640, 480, 30.0)
    assert [call[0] for call in camera.calls][-2:] == ["stop", "close"]


def test_camera_failing_at_start_exits_2_without_a_traceback(tmp_path, face_models):
    """A source that raises in start() (after the models loaded) stops the runtime cleanly: the worker thread
    never started, so shutdown must not try to join it."""
    path = tmp_path / "missing.toml"
    path.write_text(toml_text({"device": {"data_dir": str(tmp_path / "data")},
                               "camera": {"source": str(tmp_path / "no-such-video.avi")},
                               "face": {"models": str(face_models)}, "mqtt": {"host": "127.0.0.1", "port": 1}}))
    result = run_cli("run", "--config", str(path), timeout=60)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert "emotion-edge: error: camera.source: no video file at" in result.stderr
