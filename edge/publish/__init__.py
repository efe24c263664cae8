"""Getting events off the device: MQTT publishing with an on-disk spool and Home Assistant discovery.

The settings, the spool, the topic names and discovery are stdlib only; paho is imported only when
`MqttPublisher` is first used (PEP 562), so `import edge.publish.spool` works on a machine without paho.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import MqttConfig
from .spool import Spool
from .topics import Topics

if TYPE_CHECKING:
    from .mqtt import MqttPublisher

__all__ = ["MqttConfig", "MqttPublisher", "Spool", "Topics"]


def __getattr__(name: str) -> Any:
    if name == "MqttPublisher":
        from . import mqtt
        return getattr(mqtt, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
