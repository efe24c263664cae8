"""The running device: sources feed pipelines on worker threads; events, state and health go to MQTT.

Data flows one way: source -> pipeline -> event -> publisher. Each modality runs in its own
thread, so a slow model in one never stalls another; the main thread publishes health and
waits for a stop signal (SIGTERM from systemd, SIGINT, or the end of a finite input).

One runtime per data dir: an exclusive flock on `<data_dir>/lock` (holding the PID) is taken before
anything else, because two instances on one config share a client id and a spool, knock each other
off the broker and delete each other's spooled events. Under systemd (Type=notify) the runtime
sends READY=1 once its pipelines run and WATCHDOG=1 only while every running pipeline progresses,
so a hung camera read or model call gets the service restarted.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter, deque
from typing import Any, Callable

from pathlib import Path

import numpy as np

from .backends import open_model
from .config import AppConfig
from .errors import EdgeError
from .events import Event, start_run
from .face.pipeline import FacePipeline
from .publish.mqtt import MqttPublisher
from .publish.spool import private_dir
from .sources.base import ENDED
from .sources.camera import CameraSource

log = logging.getLogger(__name__)

LOCK_FILENAME = "lock"
# Source counters that move while a source works: items arriving, or its retry loop going round while it
# waits for an input (a camera being reopened, an EEG headband not switched on yet).
PROGRESS_COUNTERS = ("captured", "read", "samples", "chunks", "reconnects", "resolves", "loops")


def lock_data_dir(data: Path) -> int:
    """Take the data dir's exclusive lock for this process's lifetime; returns the open lock file descriptor."""
    path = data / LOCK_FILENAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise EdgeError(f"cannot open the lock file {path} ({exc.strerror}); make device.data_dir {data} writable "
                        "by this user") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise EdgeError(f"device.data_dir {data} is in use by another emotion-edge (PID {holder}); stop that one, "
                        "or give this instance its own device.data_dir and device.id") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (no DNS lookup: a name is trusted only when it says so)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class SystemdNotifier:
    """sd_notify(3) with the standard library: datagrams to $NOTIFY_SOCKET ('@' = abstract namespace).

    `watchdog_s` is WatchdogSec as systemd passes it (WATCHDOG_USEC), or None without a watchdog."""

    def __init__(self, environ=os.environ):
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self.address else None
        self._failed = False

    def notify(self, message: str) -> None:
        if self._socket is None:
            return
        try:
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd through %s (%s)", self.address.replace("\0", "@"), exc)
            self._failed = True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


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
        self.last_progress = time.monotonic()
        self.done = False  # the loop ended (input over or failed): no longer watched
        self._counters: tuple = ()

    def quiet_s(self) -> float:
        """Longest time the source may legitimately go without a counter moving (one retry wait plus one
        blocking open); the watchdog waits at least this long before it calls the pipeline hung."""
        return 0.0

    def _source_ticked(self) -> bool:
        stats = self.source.stats()
        counters = tuple(stats.get(key) for key in PROGRESS_COUNTERS)
        moved, self._counters = counters != self._counters, counters
        return moved

    def start(self) -> None:
        self.source.start()
        self.last_progress = time.monotonic()
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
                    if self._source_ticked():
                        self.last_progress = time.monotonic()
                    continue
                received = time.perf_counter()
                self.handle(item)
                self.times.add("total", (time.perf_counter() - received) * 1000)
                self.items += 1
                self._item_times.append(time.monotonic())
                self.last_progress = self._item_times[-1]
        except EdgeError as exc:
            log.error("%s: %s", self.modality, exc)
            runtime.fail(str(exc), code=2)
        except Exception:
            log.exception("%s worker failed", self.modality)
            runtime.fail(f"{self.modality} worker failed (see the log above)")
        finally:
            self.done = True
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

    def quiet_s(self) -> float:
        camera = self.runtime.config.camera
        return camera.reconnect_max_s + camera.open_timeout_s + camera.read_timeout_s

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

    def quiet_s(self) -> float:
        config = self.runtime.config
        return config.microphone.backoff_max_s + config.microphone.stall_timeout_s \
            if config.voice.source == "microphone" else 0.0

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

    def quiet_s(self) -> float:
        lsl = self.runtime.config.lsl
        return lsl.backoff_max_s + 4 * lsl.resolve_timeout_s  # resolve, open, clock offset, stream info

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
        self._lock_fd: int | None = lock_data_dir(data)
        try:
            self.run_number = start_run(data)
            log.info("run %d of device %s (event ids are <device>-<run>-<seq>)", self.run_number, config.device.id)
            _, password = config.mqtt.credentials()
            if password and not config.mqtt.uses_tls and not is_loopback(config.mqtt.host):
                log.warning("the MQTT password will be sent unencrypted to %s: set mqtt.tls = true (usually with "
                            "mqtt.port = 8883), or use a broker on this machine", config.mqtt.host)
            self.workers: dict[str, Worker] = {}
            if config.face.enabled:
                self.workers["face"] = FaceWorker(self)
            if config.voice.enabled:
                self.workers["voice"] = VoiceWorker(self)
            if config.eeg.enabled:
                self.workers["eeg"] = EEGWorker(self)
            self.publisher = MqttPublisher(config.mqtt, config.device.id, modalities, data / "spool")
        except BaseException:
            self.release()
            raise
        self.notifier = SystemdNotifier()

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

    def release(self) -> None:
        """Give up the data dir lock (a process that exits releases it anyway)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def stalled(self) -> list[str]:
        """Running pipelines with no progress for max(WatchdogSec/2, the source's longest legitimate wait)."""
        now, half = time.monotonic(), (self.notifier.watchdog_s or 0.0) / 2
        return [modality for modality, worker in self.workers.items()
                if not worker.done and now - worker.last_progress > max(half, worker.quiet_s())]

    def _feed_watchdog(self) -> None:
        stalled = self.stalled()
        if not stalled:
            self.notifier.notify("WATCHDOG=1")
            self._reported_stall = False
        elif not self._reported_stall:
            quiet = time.monotonic() - min(self.workers[m].last_progress for m in stalled)
            log.error("%s pipeline made no progress for %.0f s: no longer feeding the systemd watchdog, so the "
                      "service is restarted", ", ".join(stalled), quiet)
            self._reported_stall = True

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
            self.notifier.notify("READY=1")
            watchdog = self.notifier.watchdog_s
            for modality, worker in self.workers.items():
                if watchdog and worker.quiet_s() >= watchdog:
                    log.warning("%s: the source's retry and open timeouts add up to %.0f s, not below the "
                                "systemd WatchdogSec of %.0f s: a long wait for the input restarts the service; "
                                "lower them or raise WatchdogSec", modality, worker.quiet_s(), watchdog)
            self._reported_stall = False
            next_ping = time.monotonic()
            interval = self.config.device.health_interval_s
            next_health = time.monotonic()
            while not self.stopping.is_set():
                if watchdog and time.monotonic() >= next_ping:
                    self._feed_watchdog()
                    next_ping = time.monotonic() + watchdog / 4
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
            self.notifier.notify("STOPPING=1")
            self.publisher.publish_health(self.health())
            self.publisher.stop()
            self.notifier.close()
            self.release()
        return self.exit_code if self.failure else 0
