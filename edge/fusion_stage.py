"""Fusion on the bus: per-modality observations in, fused observations, events and state out.

`edge.fusion.Fusion` is synchronous and knows nothing of threads; this stage feeds it from its own bus
queue, and a `Tick` from the main thread every fraction of a second lets it notice a modality that went
quiet (its weight ages out) even when nothing else arrives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .observation import Observation
from .policy import EventPolicy
from .smoothing import ObservationSmoother
from .worker import publish


@dataclass(frozen=True)
class Tick:
    timestamp: float


class FusionStage:
    name = "fusion"
    modality = "fused"
    accepts = (Observation, Tick)
    queue_size = 5000

    def __init__(self, config, bus):
        from .fusion import Fusion

        self.bus = bus
        self.fusion = Fusion(config.fusion)
        self.smoother = ObservationSmoother({})
        self.policy = EventPolicy("fused", config.device.id, 0.0, config.fusion.state_interval_s)
        self.fused = 0

    def start(self) -> None:
        pass

    def tick(self) -> None:
        self.bus.publish(Tick(time.time()))

    def handle(self, messages: list) -> None:
        for message in messages:
            if isinstance(message, Tick):
                self._publish(self.fusion.tick(message.timestamp))
            elif message.modality != "fused":
                self._publish(self.fusion.update(message))

    def _publish(self, observations: list[Observation]) -> None:
        self.fused += len(observations)
        publish(observations, self.smoother, self.policy, self.bus)

    def stop(self) -> None:
        pass

    def health(self) -> dict[str, Any]:
        return {"observations": self.fused}
