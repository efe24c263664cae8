"""Outputs are equal peers: each sink subscribes to the bus and handles messages on its own thread.

A sink is one module with its own typed config and a class following `Sink`; it is registered in
`SINKS` (name -> import path of its factory `make(config: AppConfig, context: RuntimeContext) -> Sink |
None`, which returns None when the sink is disabled). The runtime starts every enabled sink; none knows about another.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class RuntimeContext:
    """What a sink may need to know about the running device beyond its configuration."""
    modalities: tuple[str, ...]  # every modality whose state and events are published, "fused" included
    labels: dict[str, tuple[str, ...]]  # each modality's possible labels (an estimator without any: ())
    controls: Any = None  # edge.controls.Controls of the running runtime, or None (tests, tools)


class Sink(Protocol):
    name: str
    accepts: tuple[type, ...]  # message types it wants from the bus: Observation, Event, State, HealthReport
    queue_size: int  # its bus queue; the oldest message is dropped past this

    def start(self) -> None:
        """Open connections and servers; raise EdgeError for a configuration that cannot work (exit 2)."""

    def handle(self, messages: list) -> None:
        """Consume a batch of messages in publish order (called on this sink's own thread)."""

    def stop(self) -> None:
        """Flush and close; called after the bus delivered everything queued."""

    def health(self) -> dict[str, Any]:
        """Metrics for the health topic."""


# name -> "module:factory"; the factory takes the AppConfig and the RuntimeContext and returns a Sink, or None
# when disabled.
SINKS: dict[str, str] = {
    "mqtt": "edge.sinks.mqtt:make",
    "lsl_outlet": "edge.sinks.lsl_outlet:make",
    "dashboard": "edge.sinks.dashboard:make",
}


def make_sinks(config, context: RuntimeContext) -> list[Sink]:
    sinks = []
    for name, target in SINKS.items():
        module, factory = target.split(":")
        sink = getattr(importlib.import_module(module), factory)(config, context)
        if sink is not None:
            sinks.append(sink)
    return sinks
