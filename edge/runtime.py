"""The running device: sources feed pipelines on worker threads; events, state and health go to MQTT.

Data flows one way: source -> pipeline -> event -> publisher. Each modality runs in its own
thread, so a slow model in one never stalls another; the main thread publishes health and
waits for a stop signal (SIGTERM from systemd, SIGINT, or the end of a finite input).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter, deque
from typing import Any, Callable

import numpy as np

from .config import AppConfig
from .errors import EdgeError
from .events import Event
from .face.pipeline import FacePipeline
from .publish.mqtt import MqttPublisher
from .sources.base import ENDED
from .sources.camera import CameraSource

log = logging.getLogger(__name__)


class StageTimes:
    """Rolling per-stage latencies for the health topic."""

    def __init__(self, size: int = 200):
        self._values: dict[str, deque] = {}
        self.size = size
        self.lock = threading.Lock()

    def add(self, stage: str, milliseconds: float) -> None:
        with self.lock:
            self._values.setdefault(stage, deque(maxlen=self.size)).append(milliseconds)

    def summary(self) -> dict[str, dict[str, float]]:
        with self.lock:
            return {stage: {"median_ms": round(float(np.median(v)), 2), "p95_ms": round(float(np.percentile(v, 95)), 2)}
                    for stage, v in self._values.items() if v}


class FaceWorker(threading.Thread):
    def __init__(self, runtime: "Runtime"):
        super().__init__(name="face-worker", daemon=True)
        self.runtime = runtime
        config = runtime.config
        self.camera = CameraSource(config.camera)
        self.pipeline = FacePipeline(config.face, config.tracker, config.smoothing, config.device.id)
        self.frames = 0
        self.times = StageTimes()
        self._frame_times: deque = deque(maxlen=100)

    def start(self) -> None:
        self.camera.start()
        super().start()

    def run(self) -> None:
        runtime = self.runtime
        try:
            while not runtime.stopping.is_set():
                frame = self.camera.read(timeout=0.5)
                if frame is None:
                    if self.camera.stats()["state"] == ENDED:
                        log.info("camera input ended")
                        runtime.source_ended("face")
                        return
                    continue
                received = time.perf_counter()
                result = self.pipeline.process(frame.image, frame.timestamp, received)
                start = time.perf_counter()
                for event in result.events:
                    runtime.emit(event)
                if result.state is not None:
                    runtime.publisher.publish_state("face", result.state)
                for stage, value in result.timings_ms.items():
                    self.times.add(stage, value)
                self.times.add("publish", (time.perf_counter() - start) * 1000)
                self.times.add("total", (time.perf_counter() - received) * 1000)
                self.frames += 1
                self._frame_times.append(time.monotonic())
        except Exception:
            log.exception("face worker failed")
            runtime.fail("face worker failed")
        finally:
            for event in self.pipeline.close():
                runtime.emit(event)
            runtime.publisher.publish_state("face", self.pipeline.state(time.time()))

    def health(self) -> dict[str, Any]:
        stamps = list(self._frame_times)
        fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
        camera = self.camera.stats()
        return {"fps": round(fps, 2), "frames": self.frames, "dropped_frames": camera.get("dropped", 0),
                "camera_state": camera.get("state"), "camera_reconnects": camera.get("reconnects", 0),
                "stages": self.times.summary(), "tracks": len(self.pipeline.tracker.active_ids)}

    def stop(self) -> None:
        self.camera.stop()
        self.join(timeout=5)


class Runtime:
    def __init__(self, config: AppConfig, on_event: Callable[[Event], None] | None = None):
        self.config = config
        self.on_event = on_event
        self.stopping = threading.Event()
        self.failure: str | None = None
        self.counts: Counter = Counter()
        self._ended: set[str] = set()
        modalities = ["face"] if config.face.enabled else []
        if not modalities:
            raise EdgeError("no modality is enabled: set face.enabled = true")
        data = config.device.data_path
        data.mkdir(parents=True, exist_ok=True)
        self.workers: dict[str, Any] = {}
        if config.face.enabled:
            self.workers["face"] = FaceWorker(self)
        self.publisher = MqttPublisher(config.mqtt, config.device.id, modalities, data / "spool")

    def emit(self, event: Event) -> None:
        self.counts[(event.modality, event.kind, event.label)] += 1
        self.publisher.publish_event(event)
        if self.on_event:
            self.on_event(event)

    def source_ended(self, modality: str) -> None:
        self._ended.add(modality)
        if self._ended >= set(self.workers):
            self.stopping.set()

    def fail(self, reason: str) -> None:
        self.failure = reason
        self.stopping.set()

    def health(self) -> dict[str, Any]:
        return {modality: worker.health() for modality, worker in self.workers.items()}

    def run(self, duration: float | None = None) -> int:
        """Run until stopped, the inputs end, or `duration` seconds pass; returns an exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, lambda *_: self.stopping.set())
            except ValueError:  # not the main thread (tests)
                pass
        self.publisher.start()
        started = time.monotonic()
        try:
            for worker in self.workers.values():
                worker.start()
            interval = self.config.device.health_interval_s
            next_health = time.monotonic()
            while not self.stopping.is_set():
                if time.monotonic() >= next_health:
                    self.publisher.publish_health(self.health())
                    next_health = time.monotonic() + interval
                if duration is not None and time.monotonic() - started >= duration:
                    break
                self.stopping.wait(0.2)
        finally:
            self.stopping.set()
            for worker in self.workers.values():
                worker.stop()
            self.publisher.publish_health(self.health())
            self.publisher.stop()
        return 1 if self.failure else 0
