"""Camera frames from OpenCV: a device, a video file, a network stream or a GStreamer pipeline.

A background thread grabs continuously and keeps only the newest frame, so inference always
works on the present and never on a backlog (an unpaced file, where every frame counts, is
instead decoded up to `prefetch` frames ahead of the consumer). Frames are RGB (OpenCV decodes
BGR; we convert once here so every consumer can assume RGB). A live input that drops is reopened
with edge.backoff.Backoff (jittered, doubling bound); the thread never dies on a bad frame or a
vanished device.

Raspberry Pi camera modules are read through picamera2 (`camera.source = "picamera2"`, see
pi_camera.py). Jetson CSI cameras (nvarguscamerasrc) are reached with a GStreamer pipeline string
ending in `appsink`, which needs an OpenCV built with GStreamer (JetPack's, not pip's).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import cv2
import numpy as np

from ..backoff import Backoff
from ..errors import EdgeError
from .base import ENDED, RECONNECTING, RUNNING, STARTING, STOPPED, BoundedQueue, NewestSlot, Source
from .camera_config import CameraConfig, Frame, source_kind

log = logging.getLogger(__name__)

NO_GSTREAMER = ("camera.source is a GStreamer pipeline, but this OpenCV has no GStreamer (pip's opencv-python "
                "wheels never do): on a Raspberry Pi set camera.source = \"picamera2\" for the camera module; on a "
                "Jetson use JetPack's OpenCV (a venv made with --system-site-packages, without pip's "
                "opencv-python-headless), or set camera.source to a /dev/videoN camera")

class _Pacer:
    """Sleeps so file frames come out at the file's own rate."""

    def __init__(self, fps: float, halt: threading.Event):
        self.interval = 1.0 / fps
        self.halt = halt
        self.origin = time.monotonic()
        self.count = 0

    def wait(self) -> None:
        due = self.origin + self.count * self.interval
        delay = due - time.monotonic()
        if delay > 0:
            self.halt.wait(delay)
        elif delay < -1.0:
            # Far behind (a stalled disk, a suspended process): restart the schedule from now.
            self.origin, self.count = time.monotonic(), 0
        self.count += 1


class _FramePool:
    """RGB frame buffers, reused once the consumer gives a frame back (`CameraSource.release`).

    A fresh ~900 KB array per 640x480 frame is freed on the consumer's thread into the capture thread's
    malloc arena, which trims it and faults it in again: 40 to 60 page faults a frame in the threaded
    benchmark, 0 to 0.5 with reuse. A buffer is reused only after the consumer released its frame (the
    worker does, once the analyzer returned) or the source itself dropped it unread; a consumer that keeps
    frames simply never releases them, and the pool then hands out one-off buffers.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._free: list[np.ndarray] = []
        self._owned: dict[int, np.ndarray] = {}  # the pool's buffers (out or free), by id: held, so ids stay theirs
        self._lock = threading.Lock()

    def convert(self, image: np.ndarray) -> np.ndarray:
        """`image` from OpenCV (BGR, BGRA or gray) as RGB, in a free pooled buffer where there is one."""
        shape = (*image.shape[:2], 3)
        with self._lock:
            while self._free and self._free[-1].shape != shape:  # the input changed size: let old ones go
                self._owned.pop(id(self._free.pop()), None)
            if self._free:
                return _to_rgb(image, self._free.pop())
            if len(self._owned) >= self.limit:
                return _to_rgb(image)  # every buffer is out (a consumer keeping frames): a one-off
            buffer = _to_rgb(image)
            self._owned[id(buffer)] = buffer
            return buffer

    def give_back(self, buffer: np.ndarray) -> None:
        with self._lock:
            if self._owned.get(id(buffer)) is buffer and all(free is not buffer for free in self._free):
                self._free.append(buffer)


class CameraSource(Source[Frame]):
    """Newest-frame capture from any OpenCV input or picamera2, with reconnects and file looping."""

    def __init__(self, config: CameraConfig | None = None, camera_class: type | None = None):
        """`camera_class` opens camera.source = "picamera2" (default: picamera2.Picamera2). A source this
        machine cannot open at all (no picamera2, a pipeline without GStreamer) fails here, before models load."""
        self.config = config or CameraConfig()
        self.config.validate()
        self.kind = source_kind(self.config.source)
        if self.kind == "pipeline" and not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
            raise EdgeError(NO_GSTREAMER)
        self._camera_class = camera_class
        if self.kind == "picamera2" and camera_class is None:
            from .pi_camera import camera_class as picamera2_class

            self._camera_class = picamera2_class()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._slot: NewestSlot[Frame] | BoundedQueue[Frame] = NewestSlot()
        self._pool = _FramePool(4)
        self._slot.close()
        self._reset_counters()
        self._state = STOPPED

    @property
    def live(self) -> bool:
        return self.kind != "file"

    def _reset_counters(self) -> None:
        self._reconnects = 0
        self._recoveries = 0
        self._loops = 0
        self._last_error: str | None = None
        self._capture_fps = 0.0

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        cfg = self.config
        capture = None
        if self.kind == "file":
            path = os.path.expanduser(cfg.source)
            if not os.path.isfile(path):
                raise EdgeError(f"camera.source: no video file at {cfg.source!r}; check the path "
                                f"(or use \"0\" or /dev/video0 for a camera)")
            capture = self._open()
            if capture is None:
                raise EdgeError(f"camera.source: OpenCV cannot decode {cfg.source!r}; convert it to a common "
                                f"format (MJPG/H.264 in .avi/.mp4)")
        elif not cfg.wait_for_device:
            capture = self._open()
            if capture is None:
                raise EdgeError(f"camera.source: cannot open {cfg.source!r} ({self.kind}); check that the device "
                                f"exists and is not in use, or set camera.wait_for_device = true to keep retrying")
        self._halt.clear()
        unpaced_file = self.kind == "file" and not cfg.realtime
        self._slot = BoundedQueue(cfg.prefetch) if unpaced_file else NewestSlot()
        # enough buffers for the queued frames, the one being processed and the one being captured
        self._pool = _FramePool((cfg.prefetch if unpaced_file else 1) + 3)
        self._reset_counters()
        self._state = STARTING
        self._thread = threading.Thread(target=self._run, args=(capture,), name=f"camera:{cfg.source}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        self._slot.close()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.config.open_timeout_s + 2.0)
            if thread.is_alive():
                log.warning("camera %s: capture thread still blocked in OpenCV after stop()", self.config.source)
        self._thread = None
        self._state = STOPPED

    def read(self, timeout: float | None = None) -> Frame | None:
        return self._slot.take(timeout)

    def release(self, item: Frame) -> None:
        self._pool.give_back(item.image)

    def stats(self) -> dict[str, Any]:
        slot = self._slot
        return {
            "source": self.config.source,
            "kind": self.kind,
            "state": self._state,
            "captured": slot.put_count,
            "read": slot.taken,
            "dropped": slot.dropped,
            "reconnects": self._reconnects,
            "recoveries": self._recoveries,
            "loops": self._loops,
            "capture_fps": round(self._capture_fps, 2),
            "last_error": self._last_error,
        }

    def _open(self):
        """An opened cv2.VideoCapture, or None (with the reason in last_error)."""
        cfg = self.config
        text = cfg.source.strip()
        capture = None
        if self.kind == "picamera2":
            return self._open_picamera2()
        try:
            if self.kind == "index":
                capture = cv2.VideoCapture(int(text))
            elif self.kind == "pipeline":
                capture = cv2.VideoCapture(text, cv2.CAP_GSTREAMER)
            elif self.kind == "url":
                capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG, [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout_s * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.read_timeout_s * 1000),
                ])
            elif self.kind == "file" and not os.path.isfile(os.path.expanduser(text)):
                self._last_error = f"no file at {text}"
                return None
            else:
                capture = cv2.VideoCapture(os.path.expanduser(text))
            if not capture.isOpened():
                capture.release()
                self._last_error = f"cannot open {text}"
                return None
            if self.live:
                self._apply_settings(capture)
            return capture
        except (cv2.error, OSError, ValueError) as exc:
            if capture is not None:
                capture.release()
            self._last_error = f"cannot open {text}: {exc}"
            return None

    def _open_picamera2(self):
        """An opened and started PiCameraCapture, or None (with the reason in last_error)."""
        from .pi_camera import PiCameraCapture

        cfg = self.config
        try:
            return PiCameraCapture(self._camera_class(), cfg.width, cfg.height, cfg.fps, cfg.read_timeout_s)
        except Exception as exc:  # noqa: BLE001 - picamera2 raises RuntimeError/IndexError with no camera or a busy one
            self._last_error = f"cannot open picamera2: {exc}"  # PiCameraCapture closed a camera it could not start
            return None

    def _apply_settings(self, capture) -> None:
        cfg = self.config
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, cfg.width), (cv2.CAP_PROP_FRAME_HEIGHT, cfg.height),
                            (cv2.CAP_PROP_FPS, cfg.fps)):
            if value:
                capture.set(prop, float(value))
        log.info("camera %s opened: %dx%d at %.1f fps", cfg.source, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                 int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), capture.get(cv2.CAP_PROP_FPS))

    def _playback(self, capture) -> tuple[_Pacer | None, float | None]:
        """For a file, at its fps: a pacer when played in real time, else the video time per frame that
        stamps its frames. A live input gets neither."""
        if self.live:
            return None, None
        fps = capture.get(cv2.CAP_PROP_FPS)
        if not (0 < fps < 1000):
            fps = self.config.fps or 30.0
        return (_Pacer(fps, self._halt), None) if self.config.realtime else (None, 1.0 / fps)

    def _run(self, capture) -> None:
        cfg = self.config
        backoff = self._backoff = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s)  # delays kept for tests
        failed = False  # the last open or read failed: the next open waits and counts as a reconnect
        frames_since_open = 0
        pacer, period = self._playback(capture) if capture is not None else (None, None)
        video_time = None  # next unpaced-file frame's stamp; runs on across loops and reopens
        index = 0
        last_grab = None
        decoded = None  # OpenCV's output buffer, decoded into again on the next read
        try:
            while not self._halt.is_set():
                try:
                    if capture is None:
                        if failed:
                            self._reconnects += 1
                            self._state = RECONNECTING
                            delay = backoff.next()
                            log.debug("camera %s: retry %d in %.1fs", cfg.source, self._reconnects, delay)
                            if self._halt.wait(delay):
                                break
                        capture = self._open()
                        if capture is None:
                            if not failed:
                                log.warning("camera %s unavailable (%s); retrying with backoff up to %gs",
                                            cfg.source, self._last_error, cfg.reconnect_max_s)
                            failed = True
                            continue
                        frames_since_open = 0
                        pacer, period = self._playback(capture)
                        last_grab = None
                    if pacer is not None:
                        pacer.wait()
                        if self._halt.is_set():
                            break
                    ok, image = capture.read(decoded) if decoded is not None else capture.read()
                    if ok and image is not None and image.size:
                        decoded = image
                        grabbed = time.time()
                        stamp = grabbed
                        if period is not None:
                            stamp = grabbed if video_time is None else video_time
                            video_time = stamp + period
                        dropped = self._slot.put(Frame(self._pool.convert(image), stamp, index))
                        if dropped is not None:
                            self._pool.give_back(dropped.image)
                        index += 1
                        if isinstance(self._slot, BoundedQueue):
                            # Unpaced file: decode ahead while frames are processed, at most `prefetch`
                            # frames, so no frame is decoded only to be dropped.
                            while not self._slot.wait_room(0.2) and not self._halt.is_set():
                                pass
                        frames_since_open += 1
                        if last_grab is not None and grabbed > last_grab:
                            rate = 1.0 / (grabbed - last_grab)
                            previous = self._capture_fps or rate
                            self._capture_fps = 0.9 * previous + 0.1 * rate
                        last_grab = grabbed
                        if failed:
                            self._recoveries += 1
                            log.info("camera %s recovered after %d reconnect attempts", cfg.source,
                                     self._reconnects)
                            failed = False
                        backoff.reset()
                        self._state = RUNNING
                        continue
                    capture.release()
                    capture = None
                    decoded = None
                    if self.kind == "file" and frames_since_open > 0:
                        if cfg.on_end == "stop":
                            log.info("camera %s: end of file after %d frames", cfg.source, index)
                            self._state = ENDED
                            self._slot.close()
                            return
                        self._loops += 1
                        continue
                    if not failed:
                        self._last_error = ("stream stopped delivering frames" if frames_since_open
                                            else "opened but delivered no frame")
                        log.warning("camera %s lost (%s); reconnecting", cfg.source, self._last_error)
                    failed = True
                except Exception as exc:  # noqa: BLE001 - a bad frame or driver fault must not end capture
                    log.exception("camera %s: capture failed; reopening", cfg.source)
                    self._last_error = f"capture failed: {exc}"
                    if capture is not None:
                        capture.release()
                        capture = None
                    failed = True
        finally:
            if capture is not None:
                capture.release()


def _to_rgb(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """OpenCV's BGR, BGRA or gray frame as RGB, written into `out` when given."""
    if image.ndim == 2:
        code = cv2.COLOR_GRAY2RGB
    elif image.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB
    else:
        code = cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code) if out is None else cv2.cvtColor(image, code, dst=out)
