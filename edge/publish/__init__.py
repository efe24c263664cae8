"""Getting events off the device: MQTT publishing with an on-disk spool and Home Assistant discovery."""

from .mqtt import MqttConfig, MqttPublisher, Topics
from .spool import Spool

__all__ = ["MqttConfig", "MqttPublisher", "Spool", "Topics"]
