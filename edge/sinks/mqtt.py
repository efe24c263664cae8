"""MQTT as a sink: events spooled and delivered at least once, retained state per modality, health.

Runs on its own bus thread, so the SQLite spool never slows a pipeline: a burst of events arrives here as
one batch and is spooled in one transaction. Topic names live in `edge.publish.topics`, the transport and
spool in `edge.publish.mqtt` / `edge.publish.spool`.
"""

from __future__ import annotations

import socket
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

    def __init__(self, config, modalities: list[str], context=None):
        from ..publish.mqtt import MqttPublisher

        controls = getattr(context, "controls", None)
        self.publisher = MqttPublisher(config.mqtt, config.device.id, modalities,
                                       config.device.data_path / "spool", info=device_info(config, context),
                                       controls=controls)

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


def device_info(config, context):
    """What Home Assistant discovery describes: names, hardware, the dashboard's URL, labels and controls."""
    from ..modalities import REGISTRY, spec
    from ..publish.discovery import DeviceInfo, board_model

    modalities = tuple(context.modalities) if context is not None else ()
    labels = dict(context.labels) if context is not None else {}
    # A modality whose smoothing releases its label without a confident leader says "uncertain"; fusion
    # withholds its label below fusion.min_confidence.
    uncertain = {name for name in modalities if name in REGISTRY and spec(name).smoothing(config)[1]}
    if "fused" in modalities:
        uncertain.add("fused")
    controls = tuple({"key": c.key, "kind": c.kind, "name": c.name, "minimum": c.minimum, "maximum": c.maximum,
                      "step": c.step, "unit": c.unit} for c in (getattr(context, "controls", None) or ()))
    dashboard = getattr(config, "dashboard", None)
    url = ""
    if dashboard is not None and dashboard.enabled and dashboard.port:
        host = dashboard.host if dashboard.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        url = f"http://{host}:{dashboard.port}/"
    mqtt = config.mqtt
    expire = mqtt.expire_after_s or int(3 * config.device.health_interval_s + 30)
    return DeviceInfo(config.device.id, modalities, labels=labels, uncertain=frozenset(uncertain), controls=controls,
                      name=mqtt.device_name, area=mqtt.suggested_area, configuration_url=url,
                      hardware=board_model(), demo=mqtt.demo, expire_after_s=expire,
                      track_events=mqtt.ha_track_events)


def make(config, context) -> MqttSink:
    return MqttSink(config, list(context.modalities), context)
