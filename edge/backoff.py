"""The one retry delay every reconnecting part uses (camera, microphone, LSL, MQTT).

Full jitter above a floor: attempt n waits uniform(min, min(max, min * 2**n)). Doubling without jitter
makes devices that lost the same broker or hub retry in lockstep, and a long cap keeps a device offline
long after its input is back.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None):
        self.min_s, self.max_s = float(min_s), float(max_s)
        self._rng = rng or random.Random()
        self._attempt = 0
        self.delays: list[float] = []  # the most recent delays, for health and tests

    def next(self) -> float:
        bound = min(self.max_s, self.min_s * 2 ** min(self._attempt, 32))
        self._attempt += 1
        delay = self._rng.uniform(self.min_s, bound)
        self.delays = self.delays[-49:] + [delay]
        return delay

    def reset(self) -> None:
        self._attempt = 0
