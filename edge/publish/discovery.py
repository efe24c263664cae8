"""Home Assistant MQTT discovery: the retained config messages that make the device appear in HA.

Per enabled modality there is a current-emotion sensor, a valence sensor, an arousal sensor (all
reading the retained state topic) and an `event` entity fed by the event topic. One diagnostic
CPU-temperature sensor reads the health topic. Config topics follow HA's
`<discovery_prefix>/<component>/<node_id>/<object_id>/config`; entities of modalities that are not
enabled get an empty retained payload, which is how HA is told to remove them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .. import __version__
from ..events import KINDS, MODALITIES
from .topics import Topics

MANUFACTURER = "emotion-edge"
MODEL = "Emotion edge runtime"

# The event entity needs a JSON object with `event_type`; the other keys become its attributes.
EVENT_VALUE_TEMPLATE = (
    '{"event_type": "{{ value_json.kind }}", "label": {{ value_json.label | to_json }}, '
    '"confidence": {{ value_json.confidence | to_json }}, "valence": {{ value_json.valence | to_json }}, '
    '"arousal": {{ value_json.arousal | to_json }}, "track_id": {{ value_json.track_id | to_json }}, '
    '"timestamp": "{{ value_json.timestamp }}"}'
)


def node_id(device_id: str) -> str:
    """HA allows only [a-zA-Z0-9_-] in node and object ids."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", device_id)


def device_block(device_id: str) -> dict[str, Any]:
    return {
        "identifiers": [f"emotion_edge_{node_id(device_id)}"],
        "name": f"Emotion edge {device_id}",
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "sw_version": __version__,
    }


def _entities(modality: str, topics: Topics) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, object_id, component-specific fields) for one modality."""
    title = {"eeg": "EEG", "fused": "Combined"}.get(modality, modality.capitalize())
    state = topics.state(modality)
    return [
        ("sensor", f"{modality}_emotion", {
            "name": f"{title} emotion", "icon": "mdi:emoticon-outline", "state_topic": state,
            "value_template": "{{ value_json.label }}", "json_attributes_topic": state,
        }),
        ("sensor", f"{modality}_valence", {
            "name": f"{title} valence", "icon": "mdi:emoticon-happy-outline", "state_topic": state,
            "value_template": "{{ value_json.valence }}", "state_class": "measurement",
            "suggested_display_precision": 2,
        }),
        ("sensor", f"{modality}_arousal", {
            "name": f"{title} arousal", "icon": "mdi:lightning-bolt-outline", "state_topic": state,
            "value_template": "{{ value_json.arousal }}", "state_class": "measurement",
            "suggested_display_precision": 2,
        }),
        ("event", f"{modality}_event", {
            "name": f"{title} emotion event", "icon": "mdi:emoticon-excited-outline",
            "state_topic": topics.event(modality), "event_types": list(KINDS),
            "value_template": EVENT_VALUE_TEMPLATE,
        }),
    ]


def _health_entities(topics: Topics) -> list[tuple[str, str, dict[str, Any]]]:
    return [("sensor", "cpu_temperature", {
        "name": "CPU temperature", "state_topic": topics.health, "value_template": "{{ value_json.cpu_temp_c }}",
        "json_attributes_topic": topics.health, "device_class": "temperature", "unit_of_measurement": "°C",
        "state_class": "measurement", "entity_category": "diagnostic",
    })]


def discovery_messages(device_id: str, modalities: list[str], topics: Topics,
                       discovery_prefix: str = "homeassistant") -> list[tuple[str, str]]:
    """(config topic, payload) pairs to publish retained; an empty payload removes the entity."""
    node = node_id(device_id)
    common = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device_block(device_id),
        "origin": {"name": "emotion-edge", "sw_version": __version__},
        "qos": 1,
    }
    messages: list[tuple[str, str]] = []
    planned: list[tuple[str, str, dict[str, Any] | None]] = []
    for modality in MODALITIES:
        for component, object_id, fields in _entities(modality, topics):
            planned.append((component, object_id, fields if modality in modalities else None))
    planned.extend(_health_entities(topics))
    for component, object_id, fields in planned:
        topic = f"{discovery_prefix}/{component}/{node}/{object_id}/config"
        if fields is None:
            messages.append((topic, ""))
            continue
        payload = {**fields, **common, "unique_id": f"emotion_edge_{node}_{object_id}"}
        messages.append((topic, json.dumps(payload, separators=(",", ":"), ensure_ascii=False)))
    return messages
