"""MQTT topic names of one device, in their own module so the transport (mqtt.py) and Home Assistant
discovery (discovery.py) both use them without importing each other, and without paho."""

from __future__ import annotations


class Topics:
    """Topic names under <prefix>/<device_id>."""

    def __init__(self, prefix: str, device_id: str):
        self.base = f"{prefix}/{device_id}"
        self.availability = f"{self.base}/availability"
        self.health = f"{self.base}/health"

    def event(self, modality: str) -> str:
        return f"{self.base}/{modality}/event"

    def state(self, modality: str) -> str:
        return f"{self.base}/{modality}/state"
