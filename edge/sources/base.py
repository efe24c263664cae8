"""The small interface every input source implements (camera, microphone, LSL).

A source runs its own background thread and keeps only the newest item, so a slow
consumer sees fresh data instead of an ever-growing backlog; overwritten items are
counted as dropped rather than queued. Where every item counts (an unpaced file), a short
bounded queue takes the slot's place instead.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# The states a source reports in stats()["state"].
STARTING = "starting"  # start() called, first open not finished yet
RUNNING = "running"  # delivering items
RECONNECTING = "reconnecting"  # lost (or never had) its input, retrying with backoff
ENDED = "ended"  # input finished and the source was configured to stop there
STOPPED = "stopped"  # stop() was called, or never started


class Source(ABC, Generic[T]):
    """A producer of timestamped items read newest-first by one consumer."""

    @abstractmethod
    def start(self) -> None:
        """Open the input and start the background thread; raise EdgeError if it cannot work at all."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the thread and release the input; safe to call twice."""

    @abstractmethod
    def read(self, timeout: float | None = None) -> T | None:
        """The newest item not read yet, waiting up to `timeout` seconds; None if none came or the source ended."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """Counters and state: at least state, read, dropped, reconnects."""

    def release(self, item: T) -> None:
        """The consumer is done with `item` and holds no part of it: its buffers may be reused."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class NewestSlot(Generic[T]):
    """A one-item, thread-safe mailbox: put() overwrites, take() waits for something newer.

    Sources use it instead of a queue so memory stays bounded and latency stays one item.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.put_count = 0
        self.taken = 0
        self.dropped = 0

    def put(self, item: T) -> T | None:
        """Store `item`; returns the unread item it replaced (dropped), if any."""
        with self._cond:
            replaced = self._item
            if replaced is not None:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._cond.notify_all()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The pending item, or None after `timeout` or once closed and empty."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            if item is not None:
                self.taken += 1
                self._cond.notify_all()
            return item

    def close(self) -> None:
        """Wake every waiting reader; the pending item can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


class BoundedQueue(Generic[T]):
    """A bounded FIFO with NewestSlot's interface, for inputs where every item counts (an unpaced file).

    The producer puts up to `capacity` items ahead and then waits for the consumer (wait_room), so an
    item that takes long to process does not leave the producer idle, and nothing is produced in vain.
    """

    def __init__(self, capacity: int):
        self._cond = threading.Condition()
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._closed = False
        self.put_count = 0
        self.taken = 0
        self.dropped = 0  # never: put() is only called when there is room

    def put(self, item: T) -> None:
        """Store `item` (the producer waited for room: nothing is ever replaced)."""
        with self._cond:
            self._items.append(item)
            self.put_count += 1
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> T | None:
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait_for(lambda: self._items or self._closed, timeout)
            if not self._items:
                return None
            self.taken += 1
            self._cond.notify_all()
            return self._items.popleft()

    def wait_room(self, timeout: float | None = None) -> bool:
        """Wait until another frame fits (or the queue closed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._items) < self._capacity or self._closed, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
