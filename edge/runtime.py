"""The running device: one worker per modality feeds the bus; fusion and sinks read from it.

Data flows one way: source -> analyzer -> (smoother, event policy) -> bus -> fusion -> bus -> sinks
(MQTT, and whatever `edge.sinks.SINKS` enables). Each modality runs in its own thread (`edge.worker`),
so a slow model in one never stalls another, and each sink drains its own bounded queue on its own
thread, so a slow broker or disk never stalls a model. The main thread publishes health and waits for
a stop signal (SIGTERM from systemd, SIGINT, or the end of every finite input).

One runtime per data dir: an exclusive flock on `<data_dir>/lock` (holding the PID) is taken before
anything else, because two instances on one config share a client id and a spool, knock each other
off the broker and delete each other's spooled events. Under systemd (Type=notify) the runtime
sends READY=1 once its pipelines run and WATCHDOG=1 only while every running pipeline progresses,
so a hung camera read or model call gets the service restarted.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from . import modalities
from .bus import Bus, HealthReport
from .config import AppConfig
from .controls import Controls
from .errors import EdgeError
from .events import Event, start_run
from .network import is_loopback
from .policy import EventPolicy
from .publish.spool import private_dir
from .sinks import RuntimeContext, make_sinks
from .smoothing import ObservationSmoother
from .worker import Worker

log = logging.getLogger(__name__)

LOCK_FILENAME = "lock"


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


class Runtime:
    def __init__(self, config: AppConfig, on_event: Callable[[Event], None] | None = None):
        self.config = config
        self.on_event = on_event
        self.stopping = threading.Event()
        self.failure: str | None = None
        self.exit_code = 0
        self.counts: Counter = Counter()
        self._ended: set[str] = set()
        specs = modalities.enabled(config)
        if not specs:
            raise EdgeError("no modality is enabled: set face.enabled, voice.enabled or eeg.enabled to true")
        data = private_dir(config.device.data_path)  # 0700, or a one-line EdgeError when it cannot be written
        self._lock_fd: int | None = lock_data_dir(data)
        self.workers: dict[str, Worker] = {}
        self.specs = {spec.name: spec for spec in specs}
        try:
            self.run_number = start_run(data)
            log.info("run %d of device %s (event ids are <device>-<run>-<seq>)", self.run_number, config.device.id)
            _, password = config.mqtt.credentials()
            if password and not config.mqtt.uses_tls and not is_loopback(config.mqtt.host):
                log.warning("the MQTT password will be sent unencrypted to %s: set mqtt.tls = true (usually with "
                            "mqtt.port = 8883), or use a broker on this machine", config.mqtt.host)
            self.bus = Bus()
            smoother = ObservationSmoother({spec.name: spec.smoothing(config) for spec in specs})
            for spec in specs:
                source, analyzer = spec.open(config)
                policy = EventPolicy(spec.name, config.device.id, spec.event_interval_s(config),
                                     spec.state_interval_s(config))
                self.workers[spec.name] = Worker(spec.name, source, analyzer, smoother, policy, self.bus,
                                                 self.stopping, self.fail, self.source_ended, spec.quiet_s(config))
            self.stages = self._fusion_stages()
            self.controls = Controls(self)
            context = RuntimeContext(tuple(modalities.published(config)), self._labels(), self.controls)
            self.sinks = make_sinks(config, context)
            self.publisher = next(sink.publisher for sink in self.sinks if sink.name == "mqtt")
            self.bus.subscribe("events", self._count_events, (Event,), maxsize=100_000)
            for sink in self.sinks:
                self.bus.subscribe(sink.name, sink.handle, sink.accepts, sink.queue_size)
        except BaseException:
            self.release()
            raise
        self.notifier = SystemdNotifier()

    def _fusion_stages(self) -> list:
        """Bus stages that turn observations into more observations (fusion), if configured."""
        if not modalities.fuses(self.config):
            return []
        from .fusion_stage import FusionStage

        stage = FusionStage(self.config, self.bus)
        self.bus.subscribe(stage.name, stage.handle, stage.accepts, stage.queue_size)
        return [stage]

    def _labels(self) -> dict[str, tuple[str, ...]]:
        """Each published modality's possible labels: the analyzers' classes, fusion's sectors."""
        labels = {name: tuple(getattr(worker.analyzer, "labels", None) or ()) for name, worker in self.workers.items()}
        if self.stages:
            from .fusion import FUSED_CIRCUMPLEX

            labels["fused"] = tuple(FUSED_CIRCUMPLEX)
        return labels

    def _count_events(self, events: list[Event]) -> None:
        for event in events:
            self.counts[(event.modality, event.kind, event.label)] += 1
            if self.on_event:
                self.on_event(event)

    def source_ended(self, modality: str) -> None:
        self._ended.add(modality)
        if self._ended >= set(self.workers):
            self.stopping.set()

    def fail(self, reason: str, code: int = 1) -> None:
        if self.failure is None:
            self.failure = reason
            self.exit_code = code
        self.stopping.set()

    def health(self) -> dict[str, Any]:
        report = {name: self.specs[name].health(worker.health()) for name, worker in self.workers.items()}
        for stage in self.stages:
            report[stage.modality] = stage.health()
        for sink in self.sinks:
            extra = sink.health()
            if extra:
                report.setdefault("sinks", {})[sink.name] = extra
        report["bus"] = self.bus.stats()
        return report

    def release(self) -> None:
        """Give up the data dir lock (a process that exits releases it anyway)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def stalled(self) -> list[str]:
        """Running pipelines with no progress for max(WatchdogSec/2, the source's longest legitimate wait)."""
        now, half = time.monotonic(), (self.notifier.watchdog_s or 0.0) / 2
        return [modality for modality, worker in self.workers.items()
                if not worker.done and now - worker.last_progress > max(half, worker.quiet_s)]

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

    def _publish_health(self) -> None:
        self.bus.publish(HealthReport(time.time(), self.health()))

    def run(self, duration: float | None = None) -> int:
        """Run until stopped, the inputs end, or `duration` seconds pass; returns an exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, lambda *_: self.stopping.set())
            except ValueError:  # not the main thread (tests)
                pass
        started = time.monotonic()
        sinks_started: list = []
        try:
            for sink in self.sinks:
                sink.start()
                sinks_started.append(sink)
            self.bus.start()
            for stage in self.stages:
                stage.start()
            for worker in self.workers.values():
                worker.start()
            self.notifier.notify("READY=1")
            watchdog = self.notifier.watchdog_s
            for modality, worker in self.workers.items():
                if watchdog and worker.quiet_s >= watchdog:
                    log.warning("%s: the source's retry and open timeouts add up to %.0f s, not below the "
                                "systemd WatchdogSec of %.0f s: a long wait for the input restarts the service; "
                                "lower them or raise WatchdogSec", modality, worker.quiet_s, watchdog)
            self._reported_stall = False
            next_ping = time.monotonic()
            interval = self.config.device.health_interval_s
            next_health = time.monotonic()
            while not self.stopping.is_set():
                if watchdog and time.monotonic() >= next_ping:
                    self._feed_watchdog()
                    next_ping = time.monotonic() + watchdog / 4
                if time.monotonic() >= next_health:
                    self._publish_health()
                    next_health = time.monotonic() + interval
                for stage in self.stages:
                    stage.tick()
                if duration is not None and time.monotonic() - started >= duration:
                    break
                self.stopping.wait(0.2)
        finally:
            self.stopping.set()
            for worker in self.workers.values():
                worker.stop()
            for stage in self.stages:
                stage.stop()
            self.notifier.notify("STOPPING=1")
            self._publish_health()
            self.bus.stop()
            for sink in reversed(sinks_started):
                try:
                    sink.stop()
                except Exception as exc:  # one sink failing to close must not keep the others open
                    log.warning("closing %s failed (%s: %s)", sink.name, type(exc).__name__, exc)
            self.notifier.close()
            self.release()
        return self.exit_code if self.failure else 0
