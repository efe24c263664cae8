"""The [camera] settings and the frame type, importable without OpenCV (check-config, defaults, tests)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import EdgeError

ON_END = ("loop", "stop")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass
class CameraConfig:
    # "0" (device index), "/dev/video0", a video file, an rtsp:// or http:// URL, "picamera2" (Raspberry Pi
    # camera module; needs apt's python3-picamera2), or a GStreamer pipeline (any string containing "!", e.g.
    # "nvarguscamerasrc ! ... ! appsink"; needs an OpenCV built with GStreamer, such as JetPack's)
    source: str = "0"
    # requested capture width in pixels; 0 keeps the device default (files are never resized)
    width: int = 0
    # requested capture height in pixels; 0 keeps the device default
    height: int = 0
    # requested capture rate for live devices; 0 keeps the default. For a file it is the playback
    # rate only when the file does not report its own
    fps: float = 0.0
    # what a video file does at its end: "loop" plays it again, "stop" ends the source (state "ended")
    on_end: str = "loop"
    # pace file playback at the file's fps (demo videos play in real time); false reads as fast as the
    # pipeline takes frames, decoding ahead while one is processed and dropping none (benchmarks, batch jobs),
    # and stamps frames with video time (start time + frame number / fps), so smoothing, tracking and event
    # times follow the video, not how fast this machine decodes it
    realtime: bool = True
    # unpaced file playback only: how many decoded frames may wait for the consumer, so decoding runs on
    # through a slow frame (one that runs the models) instead of idling after one frame; 3 covers a whole
    # face.infer_every cycle up to 3
    prefetch: int = 3
    # shortest wait before reopening a lost or unopenable input, in seconds; the bound doubles on each failure
    # (each wait is drawn between this and the bound, so cameras that failed together do not retry in lockstep)
    reconnect_initial_s: float = 0.5
    # upper bound of the reconnect wait, in seconds
    reconnect_max_s: float = 10.0
    # how long opening a network stream may block before it counts as failed, in seconds
    open_timeout_s: float = 10.0
    # how long a network stream read may stall before it counts as lost, in seconds
    read_timeout_s: float = 5.0
    # a live device or stream that cannot be opened at start is retried in the background;
    # false makes that a startup error instead (files always fail fast)
    wait_for_device: bool = True

    def validate(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise EdgeError("camera.source is empty: set it to a device index like \"0\", a /dev/video* path, "
                            "a video file, a stream URL or a GStreamer pipeline")
        for key in ("width", "height"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise EdgeError(f"camera.{key} must be a whole number of pixels >= 0 (0 = device default), "
                                f"not {value!r}")
        if source_kind(self.source) == "picamera2" and bool(self.width) != bool(self.height):
            raise EdgeError(f"camera.width and camera.height must both be set for picamera2 (or both 0 for its "
                            f"default size), not {self.width} x {self.height}")
        if not _is_number(self.fps) or self.fps < 0:
            raise EdgeError(f"camera.fps must be a number >= 0 (0 = device default), not {self.fps!r}")
        if self.on_end not in ON_END:
            raise EdgeError(f"camera.on_end must be one of {', '.join(ON_END)}, not {self.on_end!r}")
        for key in ("reconnect_initial_s", "reconnect_max_s", "open_timeout_s", "read_timeout_s"):
            value = getattr(self, key)
            if not _is_number(value) or value <= 0:
                raise EdgeError(f"camera.{key} must be a number of seconds > 0, not {value!r}")
        if not isinstance(self.prefetch, int) or isinstance(self.prefetch, bool) or not 1 <= self.prefetch <= 16:
            raise EdgeError(f"camera.prefetch must be a whole number of frames from 1 to 16, not {self.prefetch!r}")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise EdgeError(f"camera.reconnect_max_s ({self.reconnect_max_s}) must be >= "
                            f"camera.reconnect_initial_s ({self.reconnect_initial_s})")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Frame:
    """One captured frame."""

    image: np.ndarray  # H x W x 3 uint8 in RGB order
    # capture time in epoch seconds: time.time() at the grab, or for an unpaced file the video time
    # (the first frame's grab time + frame number / the file's fps)
    timestamp: float
    index: int  # 0-based count of frames grabbed since start(); a gap between reads means drops


def source_kind(source: str) -> str:
    """How a `camera.source` string is opened: "pipeline", "index", "picamera2", "url", "device" or "file"."""
    text = source.strip()
    if "!" in text:
        return "pipeline"
    if text.isdigit():
        return "index"
    if text == "picamera2":
        return "picamera2"
    if _URL.match(text):
        return "url"
    if text.startswith("/dev/"):
        return "device"
    return "file"
