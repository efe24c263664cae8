"""Sliding windows over a chunked stream (default 4 s long, a new one every 0.5 s)."""

from __future__ import annotations

import numpy as np


class SlidingWindow:
    """Collects chunks and hands out overlapping windows of `length` samples every `hop` samples.

    Keeps the raw and the filtered samples side by side (quality checks need the raw signal,
    features the filtered one) plus their timestamps. Windows end at sample length, length+hop,
    length+2*hop, ... counted from the last reset, whatever the chunk sizes.
    """

    def __init__(self, n_channels: int, length: int, hop: int):
        if length < 1 or hop < 1:
            raise ValueError("window length and hop must be positive")
        self.n_channels, self.length, self.hop = n_channels, length, hop
        self.reset()

    def reset(self) -> None:
        """Drop buffered samples (after a gap, so no window spans a discontinuity)."""
        self._times = np.empty(0)
        self._raw = np.empty((0, self.n_channels))
        self._filtered = np.empty((0, self.n_channels))
        self._bad = np.empty((0, self.n_channels), dtype=bool)
        self._offset = 0  # absolute index of the first buffered sample
        self._next_end = self.length

    @property
    def buffered(self) -> int:
        return len(self._times)

    def push(self, times: np.ndarray, raw: np.ndarray, filtered: np.ndarray, bad: np.ndarray) -> list[tuple]:
        """Add samples; returns the windows completed by them as (times, raw, filtered, bad) tuples."""
        self._times = np.concatenate([self._times, times])
        self._raw = np.concatenate([self._raw, raw])
        self._filtered = np.concatenate([self._filtered, filtered])
        self._bad = np.concatenate([self._bad, bad])
        total = self._offset + len(self._times)
        windows = []
        while self._next_end <= total:
            end = self._next_end - self._offset
            start = end - self.length
            windows.append((self._times[start:end], self._raw[start:end], self._filtered[start:end],
                            self._bad[start:end]))
            self._next_end += self.hop
        drop = max(0, self._next_end - self.length - self._offset)
        if drop:
            self._times, self._raw = self._times[drop:], self._raw[drop:]
            self._filtered, self._bad = self._filtered[drop:], self._bad[drop:]
            self._offset += drop
        return windows
