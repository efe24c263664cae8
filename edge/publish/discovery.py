"""Home Assistant MQTT discovery: the retained config messages that make the device appear in HA.

Every entity reads a topic that has its value, and only that value, so HA shows what is known and records
a row only when it changes:
- per published modality: valence and arousal sensors, an `enum` emotion sensor with the label options
  (only when the modality has labels: EEG's index has none; "uncertain" when a label can be withheld
  while there is data), and an `event` entity (emotion events; track start/end only with
  `mqtt.ha_track_events`, because a busy room would fill the logbook). All read the retained state topic
  through a template that yields HA's "None" (unknown) for null, never 0, and carry no attributes: the
  state's timestamp and confidence would make every update a recorder row;
- presence for the camera: an occupancy `binary_sensor` "Face in view" and a "Faces in view" count;
- diagnostics (entity_category diagnostic) from the health topic: fps, inference time, dropped frames,
  per-source connectivity and reconnects, EEG signal quality per electrode (once the stream named its electrodes),
  spool depth, MQTT reconnects, and CPU temperature only on a board that reports one;
- controls (entity_category config): a switch or number per `edge.controls` control, commanded on
  `<prefix>/<device>/set/<key>` and echoed on the retained `<prefix>/<device>/controls`.

Availability is a list with `availability_mode: all`: the device's topic (online while it is connected,
the broker's last will otherwise) and, for a modality's entities, that modality's own topic (online only
while its input runs). State sensors also `expire_after`, so a value nobody refreshes is never shown as
live. Config topics follow `<discovery_prefix>/<component>/<node_id>/<object_id>/config`; an empty retained
payload removes an entity (modalities not published, electrodes no longer seen, the demo at its end).
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..events import MODALITIES
from .topics import Topics

MANUFACTURER = "emotion-edge"
MODEL = "Emotion edge runtime"
UNCERTAIN = "uncertain"
# A Muse's electrodes: entities for them are removed when a stream stops naming them.
KNOWN_ELECTRODES = ("TP9", "AF7", "AF8", "TP10")
# Every control key a runtime may have, so the entities of controls this run lacks are removed.
KNOWN_CONTROLS = (*(("switch", f"{m}_enabled") for m in MODALITIES if m != "fused"), ("switch", "camera_privacy"),
                  ("number", "face_score_threshold"), ("number", "face_min_confidence"), ("number", "face_dwell_s"))
TITLES = {"face": "Face", "voice": "Voice", "eeg": "EEG", "fused": "Mood"}
SOURCES = {"face": ("camera_state", "Camera"), "voice": ("source_state", "Microphone"),
           "eeg": ("source_state", "Headband")}

# The event entity needs a JSON object with `event_type`; an empty rendering is ignored by HA (kinds not offered).
EVENT_VALUE_TEMPLATE = (
    '{%% if value_json.kind in %s %%}{"event_type": "{{ value_json.kind }}", '
    '"label": {{ value_json.label | to_json }}, "confidence": {{ value_json.confidence | to_json }}, '
    '"valence": {{ value_json.valence | to_json }}, "arousal": {{ value_json.arousal | to_json }}, '
    '"track_id": {{ value_json.track_id | to_json }}}{%% endif %%}'
)


def node_id(device_id: str) -> str:
    """HA allows only [a-zA-Z0-9_-] in node and object ids."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", device_id)


def board_model() -> str:
    """The hardware HA shows: the device tree's model on a Raspberry Pi or Jetson, else OS and machine."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            text = Path(path).read_bytes().rstrip(b"\0").decode("ascii", "replace").strip()
        except OSError:
            continue
        if text:
            return text
    return f"{platform.system()} {platform.machine()}".strip() or "unknown"


@dataclass(frozen=True)
class DeviceInfo:
    """What discovery describes, from the configuration and the running runtime."""
    device_id: str
    modalities: tuple[str, ...]
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a modality without labels gets no enum
    uncertain: frozenset[str] = frozenset()  # modalities whose label is withheld (None) while there is data
    controls: tuple[dict[str, Any], ...] = ()  # key, kind, name, minimum, maximum, step, unit
    name: str = ""  # HA device name; "" = the device id
    area: str = ""
    configuration_url: str = ""
    hardware: str = ""
    demo: bool = False
    expire_after_s: int = 60
    track_events: bool = False


def device_block(info: DeviceInfo) -> dict[str, Any]:
    name = info.name or info.device_id
    block: dict[str, Any] = {
        "identifiers": [f"emotion_edge_{node_id(info.device_id)}"],
        "name": f"{name} (demo)" if info.demo and "demo" not in name.lower() else name,
        "manufacturer": MANUFACTURER,
        "model": f"{MODEL} (demo)" if info.demo else MODEL,
        "sw_version": __version__,
    }
    if info.hardware:
        block["hw_version"] = info.hardware
    if info.configuration_url:
        block["configuration_url"] = info.configuration_url
    if info.area:
        block["suggested_area"] = info.area
    return block


def _health(modality: str, key: str) -> str:
    return f"(value_json.get('{modality}') or {{}}).get('{key}')"


def _number(expression: str, scale: str = "", digits: int = 2) -> str:
    """Renders the value, or "None" (HA: unknown) when the health has none."""
    return (f"{{% set v = {expression} %}}{{{{ none if v is none else (v{scale}) | round({digits}) }}}}")


def _modality_entities(modality: str, info: DeviceInfo, topics: Topics, expire: int
                       ) -> list[tuple[str, str, dict[str, Any] | None, str | None]]:
    """(component, object_id, fields or None to remove, modality whose availability applies)."""
    title = TITLES[modality]
    state = topics.state(modality)
    labels = tuple(info.labels.get(modality) or ())
    entities: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
    if labels:
        options = [*labels, UNCERTAIN] if modality in info.uncertain else list(labels)
        if modality in info.uncertain:
            template = ("{{ value_json.label if value_json.label is not none else ('uncertain' if "
                        "value_json.valence is not none or value_json.arousal is not none else none) }}")
        else:
            template = "{{ value_json.label }}"
        entities.append(("sensor", f"{modality}_emotion", {
            "name": "Mood" if modality == "fused" else f"{title} emotion", "icon": "mdi:emoticon-outline",
            "state_topic": state, "value_template": template, "device_class": "enum", "options": options,
            "expire_after": expire}, modality))
    else:
        entities.append(("sensor", f"{modality}_emotion", None, modality))
    for key, icon in (("valence", "mdi:emoticon-happy-outline"), ("arousal", "mdi:lightning-bolt-outline")):
        entities.append(("sensor", f"{modality}_{key}", {
            "name": f"{title} {key}", "icon": icon, "state_topic": state,
            # two decimals, as HA shows them: a drift in the fourth is no new recorder row
            "value_template": _number(f"value_json.{key}"), "state_class": "measurement",
            "suggested_display_precision": 2, "expire_after": expire}, modality))
    kinds = ["emotion", "track_start", "track_end"] if info.track_events and modality == "face" else ["emotion"]
    entities.append(("event", f"{modality}_event", {
        "name": f"{title} event", "icon": "mdi:emoticon-excited-outline", "state_topic": topics.event(modality),
        "event_types": kinds, "value_template": EVENT_VALUE_TEMPLATE % json.dumps(kinds)}, modality))
    if modality == "face":
        entities.append(("binary_sensor", "face_presence", {
            "name": "Face in view", "device_class": "occupancy", "state_topic": state,
            "value_template": "{{ 'ON' if value_json.tracks else 'OFF' }}", "expire_after": expire}, modality))
        entities.append(("sensor", "face_count", {
            "name": "Faces in view", "icon": "mdi:account-multiple", "state_topic": state,
            "value_template": "{{ value_json.tracks }}", "state_class": "measurement", "expire_after": expire},
            modality))
    return entities


def _diagnostics(info: DeviceInfo, topics: Topics, expire: int, electrodes: tuple[str, ...], cpu_temperature: bool
                 ) -> list[tuple[str, str, dict[str, Any] | None, str | None]]:
    health = topics.health
    common = {"state_topic": health, "entity_category": "diagnostic", "expire_after": expire}
    entities: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
    published = set(info.modalities)

    def add(component, object_id, fields, present):
        entities.append((component, object_id, {**common, **fields} if present else None, None))

    face = "face" in published
    add("sensor", "face_fps", {"name": "Camera frame rate", "unit_of_measurement": "fps", "state_class": "measurement",
                               "value_template": _number(_health("face", "fps"), digits=1)}, face)
    stages = "((value_json.get('face') or {}).get('stages') or {})"
    add("sensor", "face_inference_ms", {
        "name": "Face inference time", "unit_of_measurement": "ms", "state_class": "measurement",
        "device_class": "duration",
        "value_template": (f"{{% set d = ({stages}.get('detect') or {{}}).get('median_ms') %}}"
                           f"{{% set c = ({stages}.get('classify') or {{}}).get('median_ms') %}}"
                           "{{ none if d is none else (d + (c or 0)) | round(2) }}")}, face)
    add("sensor", "face_dropped_frames", {"name": "Dropped frames", "state_class": "total_increasing",
                                          "icon": "mdi:filmstrip-off",
                                          "value_template": _number(_health("face", "dropped_frames"), digits=0)},
        face)
    for modality in ("voice", "eeg"):
        inner = f"((value_json.get('{modality}') or {{}}).get('stages') or {{}})"
        add("sensor", f"{modality}_inference_ms", {
            "name": f"{TITLES[modality]} inference time", "unit_of_measurement": "ms", "state_class": "measurement",
            "device_class": "duration",
            "value_template": _number(f"({inner}.get('total') or {{}}).get('median_ms')")}, modality in published)
    for modality, (key, title) in SOURCES.items():
        add("binary_sensor", f"{modality}_source", {
            "name": f"{title} connected", "device_class": "connectivity",
            "value_template": (f"{{% set s = {_health(modality, key)} %}}"
                               "{{ 'None' if s is none else ('ON' if s == 'running' else 'OFF') }}")},
            modality in published)
    for modality, (_, title) in SOURCES.items():
        key = "camera_reconnects" if modality == "face" else "source_reconnects"
        add("sensor", f"{modality}_reconnects", {
            "name": f"{title} reconnects", "state_class": "total_increasing", "icon": "mdi:restart",
            "value_template": _number(_health(modality, key), digits=0)}, modality in published)
    shown = set(electrodes) if "eeg" in published else set()
    for electrode in dict.fromkeys((*KNOWN_ELECTRODES, *electrodes)):
        path = f"((value_json.get('eeg') or {{}}).get('electrodes') or {{}}).get('{electrode}')"
        add("sensor", f"eeg_quality_{node_id(electrode)}", {
            "name": f"EEG {electrode} signal quality", "unit_of_measurement": "%", "state_class": "measurement",
            "icon": "mdi:sine-wave",
            "value_template": _number(f"({path} or {{}}).get('score')", scale=" * 100", digits=0)},
            electrode in shown)
    add("sensor", "spool_depth", {"name": "Unsent events", "icon": "mdi:tray-full", "state_class": "measurement",
                                  "value_template": "{{ value_json.spool_depth }}"}, True)
    add("sensor", "mqtt_reconnects", {"name": "MQTT reconnects", "icon": "mdi:lan-disconnect",
                                      "state_class": "total_increasing",
                                      "value_template": "{{ value_json.reconnects }}"}, True)
    add("sensor", "cpu_temperature", {"name": "CPU temperature", "device_class": "temperature",
                                      "unit_of_measurement": "°C", "state_class": "measurement",
                                      "value_template": "{{ value_json.cpu_temp_c }}"}, cpu_temperature)
    return entities


def _controls(info: DeviceInfo, topics: Topics) -> list[tuple[str, str, dict[str, Any] | None, str | None]]:
    entities: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
    present = set()
    for control in info.controls:
        key = control["key"]
        present.add((control["kind"], key))
        fields: dict[str, Any] = {"name": control["name"], "command_topic": topics.command(key),
                                  "state_topic": topics.controls, "value_template": f"{{{{ value_json.{key} }}}}",
                                  "entity_category": "config", "retain": False}
        if control["kind"] == "switch":
            fields.update(payload_on="ON", payload_off="OFF", state_on="ON", state_off="OFF",
                          icon="mdi:cctv-off" if key == "camera_privacy" else "mdi:toggle-switch")
        else:
            fields.update(min=control["minimum"], max=control["maximum"], step=control["step"], mode="box",
                          icon="mdi:tune")
            if control.get("unit"):
                fields["unit_of_measurement"] = control["unit"]
        entities.append((control["kind"], key, fields, None))
    for kind, key in KNOWN_CONTROLS:
        if (kind, key) not in present:
            entities.append((kind, key, None, None))
    return entities


def discovery_messages(info: DeviceInfo, topics: Topics, discovery_prefix: str = "homeassistant",
                       electrodes: tuple[str, ...] = (), cpu_temperature: bool = False,
                       remove: bool = False) -> list[tuple[str, str]]:
    """(config topic, payload) pairs to publish retained; an empty payload removes the entity (all of them
    with `remove`)."""
    node = node_id(info.device_id)
    expire = int(info.expire_after_s)
    device = device_block(info)
    planned: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
    for modality in MODALITIES:
        for component, object_id, fields, owner in _modality_entities(modality, info, topics, expire):
            planned.append((component, object_id, fields if modality in info.modalities else None, owner))
    planned.extend(_diagnostics(info, topics, expire, electrodes, cpu_temperature))
    planned.extend(_controls(info, topics))
    messages: list[tuple[str, str]] = []
    for component, object_id, fields, owner in planned:
        topic = f"{discovery_prefix}/{component}/{node}/{object_id}/config"
        if fields is None or remove:
            messages.append((topic, ""))
            continue
        availability = [{"topic": topics.availability, "payload_available": "online",
                         "payload_not_available": "offline"}]
        if owner is not None:
            availability.append({"topic": topics.modality_availability(owner), "payload_available": "online",
                                 "payload_not_available": "offline"})
        payload = {**fields, "availability": availability, "availability_mode": "all", "device": device,
                   "origin": {"name": "emotion-edge", "sw_version": __version__}, "qos": 1,
                   "unique_id": f"emotion_edge_{node}_{object_id}"}
        messages.append((topic, json.dumps(payload, separators=(",", ":"), ensure_ascii=False)))
    return messages
