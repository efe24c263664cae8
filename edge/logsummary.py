"""Logs an operator can read after months: a repeated condition is logged once, then summarised.

A dropped event, an EEG gap or a refused publish can happen thousands of times an hour; one line each
buries everything else. `Repeats.note` logs the first occurrence at once, counts the later ones and logs
one summary line ("... (N more time(s) in the last 60 s)") at most once per interval; `flush` logs what
is still pending (call it at shutdown so no count is lost).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class Repeats:
    def __init__(self, logger: logging.Logger, interval_s: float = 60.0):
        self._log = logger
        self.interval_s = interval_s
        self._seen: dict[Any, list] = {}  # key -> [time of the last line, occurrences not logged, level, message]
        self._lock = threading.Lock()

    def note(self, key: Any, level: int, message: str, *args: Any) -> None:
        text = message % args if args else message
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(key)
            if entry is None:
                self._seen[key] = [now, 0, level, text]
                line = text
            else:
                entry[1] += 1
                entry[2], entry[3] = level, text
                if now - entry[0] < self.interval_s:
                    return
                line = f"{text} ({entry[1]} more time(s) in the last {now - entry[0]:.0f} s)"
                entry[0], entry[1] = now, 0
        self._log.log(level, "%s", line)

    def forget(self, kind: Any) -> None:
        """Forget the keys whose first element is `kind` (a condition that ended): its next occurrence is
        logged at once again. Counts not yet summarised are dropped: the condition's end is logged instead."""
        with self._lock:
            for key in [k for k in self._seen if (k[0] if isinstance(k, tuple) else k) == kind]:
                del self._seen[key]

    def flush(self) -> None:
        with self._lock:
            pending, self._seen = list(self._seen.values()), {}
        self._summarise(pending)

    def _summarise(self, entries: list) -> None:
        now = time.monotonic()
        for since, count, level, text in entries:
            if count:
                self._log.log(level, "%s (%d more time(s) in the last %.0f s)", text, count, now - since)
