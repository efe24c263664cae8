"""Face: a camera (OpenCV, GStreamer or picamera2) and the face analyzer."""

from __future__ import annotations

from typing import Any

from ..modalities import Modality


def _open(config):
    from ..sources.camera import CameraSource
    from .analyzer import FaceAnalyzer

    camera = CameraSource(config.camera)  # checks the camera source can work here before the models load
    return camera, FaceAnalyzer(config.face, config.tracker, cache_dir=config.device.cache_path)


def _health(worker: dict[str, Any]) -> dict[str, Any]:
    camera = worker.pop("source")
    return {"fps": worker.pop("rate_per_s"), "frames": worker.pop("items"), "dropped_frames": camera.get("dropped", 0),
            "camera_state": camera.get("state"), "camera_reconnects": camera.get("reconnects", 0), **worker}


SPEC = Modality(
    name="face",
    enabled=lambda config: config.face.enabled,
    open=_open,
    smoothing=lambda config: (config.smoothing, False),
    state_interval_s=lambda config: config.face.state_interval_s,
    quiet_s=lambda config: config.camera.reconnect_max_s + config.camera.open_timeout_s + config.camera.read_timeout_s,
    health=_health,
)
