"""A small in-process bus: every producer publishes, every subscriber drains its own bounded queue.

Producers (modality workers, fusion, the health timer) never wait for a consumer: each subscriber has
a queue of at most `maxsize` messages and, when a slow consumer lets it fill, the oldest message is
dropped and counted (a dashboard that stalls costs that dashboard data, never the camera a frame).
Each subscriber runs on its own thread and gets its messages in batches, in publish order, so a sink
can write a burst in one transaction. `stop()` delivers what is queued before the threads end.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .logsummary import Repeats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthReport:
    """The runtime's periodic health: per-modality metrics, plus the sinks' and the bus's own."""
    timestamp: float
    metrics: dict[str, Any] = field(default_factory=dict)


class Subscription:
    def __init__(self, bus: "Bus", name: str, handler: Callable[[list], None], accepts: tuple[type, ...],
                 maxsize: int, batch: int):
        self.bus, self.name, self.handler, self.accepts = bus, name, handler, accepts
        self.maxsize, self.batch = maxsize, batch
        self.queue: deque = deque()
        self.dropped = 0
        self.handled = 0
        self.failures = 0
        self._ready = threading.Condition()
        self._closing = False
        self.thread = threading.Thread(target=self._run, name=f"bus-{name}", daemon=True)

    def offer(self, message: Any) -> None:
        with self._ready:
            if len(self.queue) >= self.maxsize:
                self.queue.popleft()
                self.dropped += 1
                self.bus.repeats.note(("dropped", self.name), logging.WARNING,
                                      "%s is not keeping up: dropped its oldest queued message (queue of %d)",
                                      self.name, self.maxsize)
            self.queue.append(message)
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self.queue and not self._closing:
                    self._ready.wait()
                if not self.queue:
                    return
                count = min(len(self.queue), self.batch)
                messages = [self.queue.popleft() for _ in range(count)]
            try:
                self.handler(messages)
            except Exception as exc:  # one bad message or sink bug must not end delivery to this sink
                self.failures += 1
                self.bus.repeats.note(("failed", self.name), logging.ERROR, "%s failed on a message: %s: %s",
                                      self.name, type(exc).__name__, exc)
                if self.failures == 1:
                    log.debug("traceback of %s's failure", self.name, exc_info=True)
            self.handled += count

    def close(self, timeout: float) -> None:
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return {"queued": len(self.queue), "dropped": self.dropped, "handled": self.handled,
                "failures": self.failures}


class Bus:
    def __init__(self):
        self._subscriptions: list[Subscription] = []
        self.repeats = Repeats(log)
        self.published = 0

    def subscribe(self, name: str, handler: Callable[[list], None], accepts: tuple[type, ...],
                  maxsize: int = 1000, batch: int = 500) -> Subscription:
        """`handler(messages)` is called on the subscriber's own thread with the messages of `accepts` types."""
        subscription = Subscription(self, name, handler, tuple(accepts), maxsize, batch)
        self._subscriptions.append(subscription)
        return subscription

    def start(self) -> None:
        for subscription in self._subscriptions:
            if subscription.thread.ident is None:
                subscription.thread.start()

    def publish(self, message: Any) -> None:
        self.published += 1
        for subscription in self._subscriptions:
            if isinstance(message, subscription.accepts):
                subscription.offer(message)

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, then end the subscriber threads."""
        for subscription in self._subscriptions:
            subscription.close(timeout)
        self.repeats.flush()

    def stats(self) -> dict[str, dict[str, int]]:
        return {subscription.name: subscription.stats() for subscription in self._subscriptions}
