"""The Raspberry Pi Camera Module through picamera2 (libcamera), for `camera.source = "picamera2"`.

pip's OpenCV has no GStreamer, so libcamerasrc pipelines do not open with it; picamera2 reaches the
camera without one. It is apt-only (python3-picamera2), so it is imported here, lazily, and the venv
must see the system packages. PiCameraCapture offers the two calls of cv2.VideoCapture the capture
loop uses (read, release), so the Pi camera shares CameraSource's reconnect/backoff and RGB path.

Not executed against a camera in this project's CI (picamera2 and libcamera exist only on Raspberry Pi
OS); written against the documented Picamera2 API.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import EdgeError

log = logging.getLogger(__name__)

MISSING = ("camera.source = \"picamera2\" needs the picamera2 module, which this Python cannot import: install "
           "the apt package python3-picamera2 and create the venv with `python3 -m venv --system-site-packages` "
           "so it can see it (the device installer does both on a Raspberry Pi)")


def camera_class() -> type:
    """picamera2.Picamera2, or EdgeError saying how to install it."""
    try:
        from picamera2 import Picamera2
    except ImportError:
        raise EdgeError(MISSING) from None
    return Picamera2


class PiCameraCapture:
    """One opened and started Picamera2: RGB888 video frames at camera.width x camera.height and camera.fps."""

    def __init__(self, camera: Any, width: int = 0, height: int = 0, fps: float = 0.0, read_timeout_s: float = 5.0):
        self.camera = camera
        self.read_timeout_s = read_timeout_s
        # "RGB888" is libcamera's name for B, G, R bytes per pixel: OpenCV's BGR, which CameraSource turns to RGB
        main: dict[str, Any] = {"format": "RGB888"}
        if width and height:
            main["size"] = (width, height)
        controls = {}
        if fps:
            frame_us = int(round(1_000_000 / fps))
            controls["FrameDurationLimits"] = (frame_us, frame_us)  # min = max: a fixed frame rate
        try:
            camera.configure(camera.create_video_configuration(main=main, controls=controls))
            camera.start()
        except BaseException:
            self.release()
            raise
        log.info("camera picamera2 opened: %s RGB888 at %s", "x".join(map(str, main.get("size", ("default",)))),
                 f"{fps:g} fps" if fps else "the default rate")

    def read(self, _buffer: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]:
        """The next frame (B, G, R order, H x W x 3); raises when the camera fails or stalls past the timeout."""
        image = self.camera.capture_array("main", wait=self.read_timeout_s)
        return image is not None and image.size > 0, image

    def release(self) -> None:
        """Stop and close the camera, so another process (or a reconnect) can open it."""
        for step in (self.camera.stop, self.camera.close):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - a failed stop must not keep the camera from closing
                log.warning("picamera2 %s failed: %s", step.__name__, exc)
