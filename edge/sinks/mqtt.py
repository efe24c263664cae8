"""MQTT as a sink: events spooled and delivered at least once, retained state per modality, health.

Runs on its own bus thread, so the SQLite spool never slows a pipeline: a burst of events arrives here as
one batch and is spooled in one transaction. Topic names live in `edge.publish.topics`, the transport and
spool in `edge.publish.mqtt` / `edge.publish.spool`.
"""

from __future__ import annotations

from typing import Any

from ..bus import HealthReport
from ..events import Event
from ..policy import State

# Events wait here while the spool catches up; past this the oldest are dropped and counted (bus stats).
QUEUE_SIZE = 50_000


class MqttSink:
    name = "mqtt"
    accepts = (Event, State, HealthReport)
    queue_size = QUEUE_SIZE

    def __init__(self, config, modalities: list[str]):
        from ..publish.mqtt import MqttPublisher

        self.publisher = MqttPublisher(config.mqtt, config.device.id, modalities,
                                       config.device.data_path / "spool")

    def start(self) -> None:
        self.publisher.start()

    def handle(self, messages: list) -> None:
        events = [message for message in messages if isinstance(message, Event)]
        if events:
            self.publisher.publish_events(events)
        states: dict[str, State] = {}
        for message in messages:
            if isinstance(message, State):
                states[message.modality] = message  # only the newest state of a burst matters
            elif isinstance(message, HealthReport):
                self.publisher.publish_health(message.metrics)
        for modality, state in states.items():
            self.publisher.publish_state(modality, state.to_dict())

    def stop(self) -> None:
        self.publisher.stop()

    def health(self) -> dict[str, Any]:
        """The broker connection and spool for the other sinks (the dashboard); the MQTT health topic gets
        the publisher's full counters from the publisher itself."""
        stats = self.publisher.stats()
        return {key: stats[key] for key in ("state", "connected", "last_error", "reconnects", "spool_depth",
                                            "spool_dropped", "dead_letters") if key in stats}


def make(config, context) -> MqttSink:
    return MqttSink(config, list(context.modalities))
