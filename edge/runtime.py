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

from pathlib import Path

import numpy as np

from .backends import open_model
from .config import AppConfig
from .errors import EdgeError
from .events import Event
from .face.pipeline import FacePipeline
from .publish.mqtt import MqttPublisher
from .publish.spool import private_dir
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


class Worker(threading.Thread):
    """One modality: read the newest item from its source, run its pipeline, hand results to the runtime."""

    modality = ""

    def __init__(self, runtime: "Runtime", source):
        super().__init__(name=f"{self.modality}-worker", daemon=True)
        self.runtime = runtime
        self.source = source
        self.items = 0
        self.times = StageTimes()
        self._item_times: deque = deque(maxlen=100)

    def start(self) -> None:
        self.source.start()
        super().start()

    def handle(self, item) -> None:
        """Process one item from the source (publish through self.runtime)."""
        raise NotImplementedError

    def finish(self) -> None:
        """Called once when the loop ends (close tracks, clear state)."""

    def run(self) -> None:
        runtime = self.runtime
        try:
            while not runtime.stopping.is_set():
                item = self.source.read(timeout=0.5)
                if item is None:
                    if self.source.stats()["state"] == ENDED:
                        log.info("%s input ended", self.modality)
                        runtime.source_ended(self.modality)
                        return
                    continue
                received = time.perf_counter()
                self.handle(item)
                self.times.add("total", (time.perf_counter() - received) * 1000)
                self.items += 1
                self._item_times.append(time.monotonic())
        except EdgeError as exc:
            log.error("%s: %s", self.modality, exc)
            runtime.fail(str(exc), code=2)
        except Exception:
            log.exception("%s worker failed", self.modality)
            runtime.fail(f"{self.modality} worker failed (see the log above)")
        finally:
            self.finish()

    def rate(self) -> float:
        stamps = list(self._item_times)
        return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0

    def stop(self) -> None:
        self.source.stop()
        if self.ident is not None:  # a source that failed to start left the thread unstarted
            self.join(timeout=5)


class FaceWorker(Worker):
    modality = "face"

    def __init__(self, runtime: "Runtime"):
        config = runtime.config
        camera = CameraSource(config.camera)  # checks the camera source can work here before the models load
        self.pipeline = FacePipeline(config.face, config.tracker, config.smoothing, config.device.id,
                                     cache_dir=config.device.cache_path)
        super().__init__(runtime, camera)

    def handle(self, frame) -> None:
        received = time.perf_counter()
        result = self.pipeline.process(frame.image, frame.timestamp, received)
        start = time.perf_counter()
        for event in result.events:
            self.runtime.emit(event)
        if result.state is not None:
            self.runtime.publisher.publish_state("face", result.state)
        for stage, value in result.timings_ms.items():
            self.times.add(stage, value)
        self.times.add("publish", (time.perf_counter() - start) * 1000)

    def finish(self) -> None:
        for event in self.pipeline.close():
            self.runtime.emit(event)
        self.runtime.publisher.publish_state("face", self.pipeline.state(time.time()))

    def health(self) -> dict[str, Any]:
        camera = self.source.stats()
        return {"fps": round(self.rate(), 2), "frames": self.items, "dropped_frames": camera.get("dropped", 0),
                "camera_state": camera.get("state"), "camera_reconnects": camera.get("reconnects", 0),
                "stages": self.times.summary(), "tracks": len(self.pipeline.tracker.active_ids),
                "models": {"face.detector": self.pipeline.detector.model.describe(),
                           "face.emotion": self.pipeline.model.describe()}}


class VoiceWorker(Worker):
    """Speech windows to voice emotion; an event when the smoothed label changes, state every window."""

    modality = "voice"

    def __init__(self, runtime: "Runtime"):
        from .sources.audio import AudioFileSource, MicrophoneSource
        from .voice.pipeline import VoicePipeline

        config = runtime.config
        voice = config.voice
        model = open_model(Path(voice.models).expanduser() / voice.model, voice.backend, voice.threads,
                           providers=voice.providers, cache_dir=config.device.cache_path)
        if model.manifest.data["task"] != "voice_emotion":
            raise EdgeError(f"voice.model = {voice.model!r} is a {model.manifest.data['task']} model, "
                            "not voice_emotion")
        self.pipeline = VoicePipeline(model, config=voice, vad_config=config.vad, device_id=config.device.id)
        source = AudioFileSource(config.audio_file) if voice.source == "file" else MicrophoneSource(config.microphone)
        self._label: str | None = None
        super().__init__(runtime, source)

    def handle(self, window) -> None:
        event = self.pipeline.process(window)
        if event is None:
            return
        if event.label != self._label:
            self._label = event.label
            self.runtime.emit(event)
        self.runtime.publisher.publish_state("voice", {
            "label": event.label, "confidence": round(event.confidence, 4), "valence": round(event.valence, 4),
            "arousal": round(event.arousal, 4), "track_id": event.track_id, "tracks": 1,
            "timestamp": event.timestamp, "model": event.model["id"]})
        health = self.pipeline.health()
        self.times.add("features", health["features_ms"])
        self.times.add("model", health["inference_ms"])

    def health(self) -> dict[str, Any]:
        source = self.source.stats()
        pipeline = self.pipeline.health()
        pipeline.pop("last", None)
        return {"windows_per_s": round(self.rate(), 2), "windows": self.items, "source_state": source.get("state"),
                "source_reconnects": source.get("reconnects", 0), "dropped": source.get("dropped", 0),
                "stages": self.times.summary(), **pipeline,
                "models": {"voice.model": self.pipeline.model.describe()} if self.pipeline.model is not None else {}}


class EEGWorker(Worker):
    """LSL EEG chunks to windows to valence/arousal (index or trained classifier); state every window,
    an event every `eeg.event_interval_s` or when a classifier's label changes."""

    modality = "eeg"

    def __init__(self, runtime: "Runtime"):
        from .eeg.pipeline import EEGPipeline
        from .sources.lsl import LSLSource

        config = runtime.config
        classifier, model_id, sha256 = None, "eeg-frontal-index", ""
        if config.eeg.model:
            from .eeg.classifier import load_eeg_classifier

            classifier = load_eeg_classifier(Path(config.eeg.model).expanduser(), config.eeg.backend,
                                             providers=config.eeg.providers, cache_dir=config.device.cache_path)
            classifier.check_config(config.eeg)  # channels, window and filters must be the ones it was trained with
            model_id, sha256 = classifier.model_id, classifier.sha256
        source = LSLSource(config.lsl)
        self.pipeline = EEGPipeline(config.eeg, source, config.device.id, classifier=classifier,
                                    model_id=model_id, model_sha256=sha256)
        self.classifier = classifier
        self._label: str | None = None
        self._last_event = -float("inf")
        super().__init__(runtime, source)

    def handle(self, chunk) -> None:
        start = time.perf_counter()
        events = self.pipeline.process_chunk(chunk)
        if events:
            self.times.add("window", (time.perf_counter() - start) * 1000 / len(events))
        for event in events:
            due = time.monotonic() - self._last_event >= self.runtime.config.eeg.event_interval_s
            if due or event.label != self._label:
                self._label = event.label
                self._last_event = time.monotonic()
                self.runtime.emit(event)
            self.runtime.publisher.publish_state("eeg", {
                "label": event.label, "confidence": round(event.confidence, 4), "valence": round(event.valence, 4),
                "arousal": round(event.arousal, 4), "track_id": event.track_id, "tracks": 1,
                "timestamp": event.timestamp, "model": event.model["id"], "estimator": event.model["estimator"],
                "rejected": event.extra.get("rejected"), "warming_up": event.extra.get("warming_up")})

    def health(self) -> dict[str, Any]:
        models = {"eeg.model": self.classifier.model.describe()} if self.classifier is not None else {}
        return {"chunks": self.items, "stages": self.times.summary(), **self.pipeline.health(), "models": models}


class Runtime:
    def __init__(self, config: AppConfig, on_event: Callable[[Event], None] | None = None):
        self.config = config
        self.on_event = on_event
        self.stopping = threading.Event()
        self.failure: str | None = None
        self.exit_code = 0
        self.counts: Counter = Counter()
        self._ended: set[str] = set()
        enabled = {"face": config.face.enabled, "voice": config.voice.enabled, "eeg": config.eeg.enabled}
        modalities = [name for name, on in enabled.items() if on]
        if not modalities:
            raise EdgeError("no modality is enabled: set face.enabled, voice.enabled or eeg.enabled to true")
        data = private_dir(config.device.data_path)  # 0700, or a one-line EdgeError when it cannot be written
        self.workers: dict[str, Worker] = {}
        if config.face.enabled:
            self.workers["face"] = FaceWorker(self)
        if config.voice.enabled:
            self.workers["voice"] = VoiceWorker(self)
        if config.eeg.enabled:
            self.workers["eeg"] = EEGWorker(self)
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

    def fail(self, reason: str, code: int = 1) -> None:
        self.failure = reason
        self.exit_code = code
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
        return self.exit_code if self.failure else 0
