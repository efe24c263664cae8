"""MQTT topic names of one device, in their own module so the transport (mqtt.py) and Home Assistant
discovery (discovery.py) both use them without importing each other, and without paho."""

from __future__ import annotations


class Topics:
    """Topic names under <prefix>/<device_id>."""

    def __init__(self, prefix: str, device_id: str):
        self.base = f"{prefix}/{device_id}"
        self.availability = f"{self.base}/availability"
        self.health = f"{self.base}/health"
        self.controls = f"{self.base}/controls"  # retained echo of every control's current value
        self.commands = f"{self.base}/set/#"  # the only subscription: commands for this device

    def event(self, modality: str) -> str:
        return f"{self.base}/{modality}/event"

    def state(self, modality: str) -> str:
        return f"{self.base}/{modality}/state"

    def modality_availability(self, modality: str) -> str:
        """online while that modality's input runs; offline when it is lost, ended or switched off."""
        return f"{self.base}/{modality}/availability"

    def command(self, key: str) -> str:
        return f"{self.base}/set/{key}"

    def command_key(self, topic: str) -> str | None:
        """The control key of a command topic of this device, or None for any other topic."""
        head = f"{self.base}/set/"
        key = topic[len(head):] if topic.startswith(head) else ""
        return key if key and "/" not in key else None
