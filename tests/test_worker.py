"""The worker's one fault policy, with a real Bus, a real Source over a list of items and an analyzer that fails
on chosen items: a failing item is skipped and counted, MAX_CONSECUTIVE_FAULTS in a row stop the runtime with
exit 1, a configuration error (EdgeError) stops it with exit 2."""

from __future__ import annotations

import logging
import threading
import time

from edge.bus import Bus
from edge.errors import EdgeError
from edge.observation import Observation
from edge.policy import EventPolicy
from edge.smoothing import ObservationSmoother, SmoothingConfig
from edge.sources.base import ENDED, RUNNING, STOPPED, Source
from edge.worker import MAX_CONSECUTIVE_FAULTS, Worker

MODALITY = "test"


class ListSource(Source):
    """Delivers its items in order, then ends (as a file does); counts what the consumer released."""

    def __init__(self, items):
        self.items = list(items)
        self.state = STOPPED
        self.read_count = 0
        self.released = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self.state = RUNNING

    def stop(self) -> None:
        if self.state != ENDED:
            self.state = STOPPED

    def read(self, timeout=None):
        with self._lock:
            if self.read_count < len(self.items):
                self.read_count += 1
                return self.items[self.read_count - 1]
            self.state = ENDED
        return None

    def stats(self):
        return {"state": self.state, "read": self.read_count, "dropped": 0, "reconnects": 0}

    def release(self, item) -> None:
        self.released.append(item)


class Flaky:
    """Observes each number as a valence; raises ValueError on the numbers in `fail`, EdgeError on "bad config"."""

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.processed = []

    def process(self, item):
        if item == "bad config":
            raise EdgeError("test.model names no file; point it at an exported model")
        if item in self.fail:
            raise ValueError(f"cannot analyse item {item}")
        self.processed.append(item)
        return [Observation(MODALITY, "subject", 1000.0 + item, valence=item / 1000, arousal=0.0, confidence=1.0)]

    def reset(self) -> None:
        pass

    def close(self):
        return []

    def health(self):
        return {"processed": len(self.processed)}

    def models(self):
        return {}


def _run(items, analyzer):
    """Run a worker over `items` until the input ends or the runtime is stopped; what it did and published."""
    bus = Bus()
    seen = []
    bus.subscribe("observations", seen.extend, (Observation,), maxsize=100_000)
    bus.start()
    stopping, fatal, ended = threading.Event(), [], []

    def on_fatal(reason, code):
        fatal.append((reason, code))
        stopping.set()

    source = ListSource(items)
    worker = Worker(MODALITY, source, analyzer, ObservationSmoother({MODALITY: (SmoothingConfig(alpha=1.0), False)}),
                    EventPolicy(MODALITY, "test-device"), bus, stopping, on_fatal, ended.append)
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    bus.stop()
    return worker, source, fatal, ended, seen


def test_a_failing_item_is_skipped_counted_and_logged_once_and_the_loop_goes_on(caplog):
    fail = {3, 7, 8, 15}
    with caplog.at_level(logging.ERROR, logger="edge.worker"):
        worker, source, fatal, ended, seen = _run(range(20), Flaky(fail))
    assert fatal == [] and ended == [MODALITY]  # the input ran out; nothing stopped the runtime
    assert worker.faults == 4 and worker.health()["faults"] == 4
    assert worker.items == 16 and worker.health()["processed"] == 16
    assert [round(o.valence * 1000) for o in seen] == [i for i in range(20) if i not in fail]
    assert source.released == list(range(20))  # failed items are released too
    faults = [r for r in caplog.records if "skipped an input" in r.getMessage()]
    assert len(faults) == 2  # the first, then one summary at shutdown: not one line per item
    assert "cannot analyse item 3" in faults[0].getMessage() and "3 more time(s)" in faults[1].getMessage()


def test_consecutive_faults_stop_the_runtime_with_exit_1():
    items = list(range(MAX_CONSECUTIVE_FAULTS + 10))
    worker, source, fatal, ended, seen = _run(items, Flaky(items))
    assert len(fatal) == 1 and fatal[0][1] == 1, fatal
    assert f"failed on {MAX_CONSECUTIVE_FAULTS} inputs in a row" in fatal[0][0] and "ValueError" in fatal[0][0]
    assert worker.faults == MAX_CONSECUTIVE_FAULTS and source.read_count == MAX_CONSECUTIVE_FAULTS
    assert ended == [] and seen == []


def test_a_good_item_resets_the_count_of_faults_in_a_row():
    run = MAX_CONSECUTIVE_FAULTS - 1
    fail = set(range(run)) | set(range(run + 1, 2 * run + 1))  # two runs of 49 failures around one good item
    worker, _, fatal, ended, seen = _run(range(2 * run + 3), Flaky(fail))
    assert fatal == [] and ended == [MODALITY]
    assert worker.faults == 2 * run and [round(o.valence * 1000) for o in seen] == [run, 2 * run + 1, 2 * run + 2]


def test_a_configuration_error_stops_the_runtime_with_exit_2_and_its_message():
    started = time.monotonic()
    worker, source, fatal, ended, seen = _run([0, 1, "bad config", 3, 4], Flaky())
    assert fatal == [("test.model names no file; point it at an exported model", 2)]
    assert worker.faults == 0 and worker.items == 2 and source.read_count == 3  # it stopped at once
    assert len(seen) == 2 and ended == [] and time.monotonic() - started < 10
