"""The one worker loop every modality runs: source -> analyzer -> smoother -> bus, with one fault policy.

A worker thread reads the newest item from its source, has the analyzer turn it into observations,
smooths them (`edge.smoothing.ObservationSmoother`), lets the event policy (`edge.policy`) decide events
and state, and publishes all of it on the bus. It never talks to a sink.

The fault policy, the same for every modality:
- an `EdgeError` (a configuration or input that cannot work: wrong model, wrong stream layout) stops the
  runtime with exit code 2 and that one line;
- any other exception from the analyzer costs the item it was processing: counted in health as `faults`,
  logged once and then summarised; the loop goes on. After `MAX_CONSECUTIVE_FAULTS` failing items in a row
  nothing useful is happening, and the runtime stops with exit code 1 so systemd restarts it clean;
- the source's own retries (a camera reopened, a headband re-resolved) use `edge.backoff.Backoff` inside
  the source and show in health as its state; the worker keeps waiting meanwhile. When the input is back,
  the analyzer's subjects end (`close()`) and its streaming state is dropped (`reset()`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np

from .bus import Bus
from .errors import EdgeError
from .logsummary import Repeats
from .policy import EventPolicy
from .smoothing import ObservationSmoother
from .sources.base import ENDED

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAULTS = 50
RECONNECT_CHECK_S = 0.5  # how often the worker asks its source whether the input restarted

# Source counters that move while a source works: items arriving, or its retry loop going round while it
# waits for an input (a camera being reopened, an EEG headband not switched on yet).
PROGRESS_COUNTERS = ("captured", "read", "samples", "chunks", "reconnects", "resolves", "loops")


def publish(observations, smoother: ObservationSmoother, policy: EventPolicy, bus: Bus) -> None:
    """Smooth raw observations, and put them, the events and the state they give on the bus."""
    for raw in observations:
        observation, changed = smoother.update(raw)
        bus.publish(observation)
        events, state = policy.update(observation, changed)
        for event in events:
            bus.publish(event)
        if state is not None:
            bus.publish(state)


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
    def __init__(self, modality: str, source, analyzer, smoother: ObservationSmoother, policy: EventPolicy,
                 bus: Bus, stopping: threading.Event, on_fatal: Callable[[str, int], None],
                 on_ended: Callable[[str], None], quiet_s: float = 0.0):
        super().__init__(name=f"{modality}-worker", daemon=True)
        self.modality, self.source, self.analyzer = modality, source, analyzer
        self.smoother, self.policy, self.bus = smoother, policy, bus
        self.stopping, self.on_fatal, self.on_ended = stopping, on_fatal, on_ended
        self.quiet_s = quiet_s  # longest legitimate silence of the source (retry wait + blocking open)
        self.items = 0
        self.faults = 0
        self.times = StageTimes()
        self._item_times: deque = deque(maxlen=100)
        self.last_progress = time.monotonic()
        self.done = False  # the loop ended (input over or failed): no longer watched
        self._counters: tuple = ()
        self._reconnects = 0
        self._next_reconnect_check = 0.0
        self._repeats = Repeats(log)
        self.paused = False  # by a control (the camera privacy switch, a modality switch): its source is stopped
        self._want_paused = False
        self._pause_changed = threading.Event()

    def start(self) -> None:
        self.source.start()
        self.last_progress = time.monotonic()
        super().start()

    def _source_ticked(self) -> bool:
        stats = self.source.stats()
        counters = tuple(stats.get(key) for key in PROGRESS_COUNTERS)
        moved, self._counters = counters != self._counters, counters
        return moved

    def publish(self, observations) -> None:
        publish(observations, self.smoother, self.policy, self.bus)

    def run(self) -> None:
        consecutive = 0
        try:
            while not self.stopping.is_set():
                if self._want_paused != self.paused:
                    self._switch_pause()
                if self.paused:
                    self.last_progress = time.monotonic()  # paused on purpose: not a hang
                    self._pause_changed.wait(0.5)
                    self._pause_changed.clear()
                    continue
                item = self.source.read(timeout=0.5)
                if item is None:
                    if self.source.stats()["state"] == ENDED:
                        log.info("%s input ended", self.modality)
                        self.on_ended(self.modality)
                        return
                    if self._source_ticked():
                        self.last_progress = time.monotonic()
                    continue
                started = time.perf_counter()
                if started >= self._next_reconnect_check:  # stats() is not free: a few times a second is enough
                    self._next_reconnect_check = started + RECONNECT_CHECK_S
                    reconnects = self.source.stats().get("reconnects", 0)
                    if reconnects != self._reconnects:  # the input restarted: its subjects end, its state goes
                        self._reconnects = reconnects
                        self.publish(self.analyzer.close())
                        self.analyzer.reset()
                try:
                    observations = self.analyzer.process(item)
                except EdgeError:
                    raise
                except Exception as exc:
                    self.faults += 1
                    consecutive += 1
                    self._repeats.note(("fault", type(exc).__name__), logging.ERROR,
                                       "%s: skipped an input the analyzer failed on (%s: %s)", self.modality,
                                       type(exc).__name__, exc)
                    if self.faults == 1:
                        log.debug("%s analyzer traceback", self.modality, exc_info=True)
                    if consecutive >= MAX_CONSECUTIVE_FAULTS:
                        self.on_fatal(f"{self.modality}: the analyzer failed on {consecutive} inputs in a row "
                                      f"({type(exc).__name__}: {exc}); stopping so the service restarts", 1)
                        return
                    continue
                finally:
                    self.source.release(item)  # the analyzer keeps no part of an item
                consecutive = 0
                analyzed = time.perf_counter()
                self.publish(observations)
                done = time.perf_counter()
                for stage, value in getattr(self.analyzer, "timings_ms", {}).items():
                    self.times.add(stage, value)
                self.times.add("publish", (done - analyzed) * 1000)
                self.times.add("total", (done - started) * 1000)
                self.items += 1
                self._item_times.append(time.monotonic())
                self.last_progress = self._item_times[-1]
        except EdgeError as exc:  # the CLI prints the reason as its one error line
            self.on_fatal(str(exc), 2)
        except Exception:
            log.exception("%s worker failed", self.modality)
            self.on_fatal(f"{self.modality} worker failed (see the log above)", 1)
        finally:
            self.done = True
            self._finish()

    def pause(self, paused: bool) -> None:
        """Stop (True) or restart (False) this modality's input; done on the worker's own thread."""
        self._want_paused = paused
        self._pause_changed.set()

    def _switch_pause(self) -> None:
        if self._want_paused:
            self.source.stop()
            self.publish(self.analyzer.close())
            self.analyzer.reset()
            self.bus.publish(self.policy.close(time.time(), paused=True))
            log.info("%s paused: its input is stopped until it is switched on again", self.modality)
        else:
            self.source.start()
            self._reconnects = self.source.stats().get("reconnects", 0)
            log.info("%s resumed", self.modality)
        self.paused = self._want_paused

    def _finish(self) -> None:
        try:
            self.publish(self.analyzer.close())
        except Exception as exc:  # closing must not hide why the loop ended
            log.warning("%s: closing the analyzer failed (%s: %s)", self.modality, type(exc).__name__, exc)
        self.bus.publish(self.policy.close(time.time()))
        self._repeats.flush()

    def rate(self) -> float:
        stamps = list(self._item_times)
        return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0

    def health(self) -> dict[str, Any]:
        return {"items": self.items, "rate_per_s": round(self.rate(), 2), "faults": self.faults, "paused": self.paused,
                "source": self.source.stats(), "stages": self.times.summary(), **self.analyzer.health(),
                "models": self.analyzer.models()}

    def stop(self) -> None:
        self.source.stop()
        if self.ident is not None:  # a source that failed to start left the thread unstarted
            self.join(timeout=5)
