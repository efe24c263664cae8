"""The [mqtt] settings, importable without paho (check-config, defaults, a device with MQTT off)."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from ..errors import EdgeError
from ..events import MODALITIES

ENV_USERNAME = "EMOTION_EDGE_MQTT_USERNAME"
ENV_PASSWORD = "EMOTION_EDGE_MQTT_PASSWORD"


@dataclass
class MqttConfig:
    host: str = "localhost"  # broker host name or address
    port: int = 1883  # broker port (8883 is usual for TLS)
    transport: str = "tcp"  # "tcp" or "websockets"
    protocol: str = "auto"  # "5", "3.1.1", or "auto" (MQTT 5, falling back to 3.1.1 when the broker refuses it)
    client_id: str = ""  # MQTT client id; empty means "emotion-edge-<device_id>"
    username: str = ""  # broker user; the EMOTION_EDGE_MQTT_USERNAME environment variable overrides it
    password: str = ""  # broker password; the EMOTION_EDGE_MQTT_PASSWORD environment variable overrides it
    keepalive: int = 30  # seconds; the broker publishes the offline last will after 1.5x this without traffic
    tls: bool = False  # connect over TLS (also switched on by any of the TLS file settings)
    tls_ca_file: str = ""  # CA bundle that signed the broker certificate; empty uses the system CAs
    tls_cert_file: str = ""  # client certificate for mutual TLS (needs tls_key_file)
    tls_key_file: str = ""  # private key of tls_cert_file
    tls_insecure: bool = False  # skip the broker host name check (self-signed lab brokers only)
    topic_prefix: str = "emotion_edge"  # topics are <topic_prefix>/<device_id>/...
    qos: int = 1  # QoS of event messages; 1 gives at-least-once delivery through the spool
    discovery: bool = True  # publish Home Assistant MQTT discovery configs
    discovery_prefix: str = "homeassistant"  # HA's discovery prefix; HA announces itself on <prefix>/status
    device_name: str = ""  # the device's name in Home Assistant; empty means device.id
    suggested_area: str = ""  # the HA area a new device is put in ("Living room"); empty leaves it unassigned
    expire_after_s: int = 0  # seconds without an update before HA shows unavailable; 0 = 3 health intervals + 30
    ha_track_events: bool = False  # HA event entities also fire on face track_start/track_end (logbook churn)
    demo: bool = False  # a demo device: named so in HA, and its HA entities are removed when the run ends
    spool_max_events: int = 100_000  # undelivered events kept on disk; past it the oldest are dropped
    spool_max_bytes: int = 64 * 1024 * 1024  # bytes of undelivered events kept on disk; past it the oldest are dropped
    max_inflight: int = 100  # events handed to the broker, not yet acknowledged (at most these repeat on reconnect)
    reconnect_min_delay_s: float = 1.0  # floor of the reconnect delay; its random bound doubles per failed attempt
    reconnect_max_delay_s: float = 10.0  # cap of the reconnect delay (each delay is jittered between floor and bound)
    retained_expiry_s: int = 300  # MQTT 5: retained availability and state expire this long after the last refresh
    connect_timeout_s: float = 5.0  # how long start() waits for the first connection before going on offline
    drain_timeout_s: float = 5.0  # how long stop() waits for spooled events to be acknowledged

    def validate(self) -> None:
        def bad(key: str, why: str) -> EdgeError:
            return EdgeError(f"mqtt.{key} {why}")

        if not self.host.strip():
            raise bad("host", "is empty: set it to the broker's host name or address")
        if not 1 <= int(self.port) <= 65535:
            raise bad("port", f"must be between 1 and 65535, not {self.port}")
        if self.transport not in ("tcp", "websockets"):
            raise bad("transport", f'must be "tcp" or "websockets", not {self.transport!r}')
        if self.protocol not in ("5", "3.1.1", "auto"):
            raise bad("protocol", f'must be "5", "3.1.1" or "auto", not {self.protocol!r}')
        if not 1 <= int(self.keepalive) <= 65535:
            raise bad("keepalive", f"must be between 1 and 65535 seconds, not {self.keepalive}")
        if self.qos not in (0, 1, 2):
            raise bad("qos", f"must be 0, 1 or 2, not {self.qos!r}")
        for key in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, key)
            if not all(level and all(c.isascii() and (c.isalnum() or c in "_-") for c in level)
                       for level in value.split("/")):
                raise bad(key, f"{value!r} is not a valid topic prefix: use levels of letters, digits, '_' or '-' "
                               "joined by single '/' (no '+', '#', '$', spaces, or empty levels such as 'a//b')")
        # Topics are <topic_prefix>/<device_id>/..., so the level after the default prefix is a device id, and
        # face/voice/eeg/availability/health are levels a device publishes under its id: a prefix that continues
        # past the default one ("emotion_edge/kitchen") or holds such a level would put this device inside
        # another device's subtree. Devices that share a custom prefix must use exactly the same one.
        levels = self.topic_prefix.split("/")
        if MqttConfig.topic_prefix in levels[:-1] or set(levels) & {*MODALITIES, "availability", "health"}:
            raise bad("topic_prefix", f"{self.topic_prefix!r} would put this device inside another device's topics "
                                      f"(<prefix>/<device_id>/...); use a prefix that ends in "
                                      f"{MqttConfig.topic_prefix!r}, such as 'site1/{MqttConfig.topic_prefix}'")
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            value = getattr(self, key)
            if value and not Path(value).is_file():
                raise bad(key, f"points to {value!r}, which is not a readable file")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise bad("tls_cert_file", "and mqtt.tls_key_file must be set together for client certificates")
        if int(self.spool_max_events) < 1:
            raise bad("spool_max_events", f"must be at least 1, not {self.spool_max_events}")
        if int(self.spool_max_bytes) < 65536:
            raise bad("spool_max_bytes", f"must be at least 65536 (64 KiB), not {self.spool_max_bytes}")
        if int(self.max_inflight) < 1:
            raise bad("max_inflight", f"must be at least 1, not {self.max_inflight}")
        if not 0 < self.reconnect_min_delay_s <= self.reconnect_max_delay_s:
            raise bad("reconnect_min_delay_s", "must be positive and not above mqtt.reconnect_max_delay_s")
        if int(self.retained_expiry_s) < 0:
            raise bad("retained_expiry_s", f"must be 0 (never expire) or more seconds, not {self.retained_expiry_s}")
        if self.tls_insecure and not self.uses_tls:
            raise bad("tls_insecure", "is set but TLS is off: set mqtt.tls = true (or mqtt.tls_ca_file), "
                                      "or remove mqtt.tls_insecure")
        if self.uses_tls:
            self._check_tls_files(bad)
        if int(self.expire_after_s) < 0:
            raise bad("expire_after_s", f"must be 0 (automatic) or more seconds, not {self.expire_after_s}")
        for key in ("device_name", "suggested_area"):
            if len(getattr(self, key)) > 64 or any(ord(c) < 32 for c in getattr(self, key)):
                raise bad(key, "must be at most 64 printable characters")
        for key in ("connect_timeout_s", "drain_timeout_s"):
            if getattr(self, key) < 0:
                raise bad(key, f"must not be negative, not {getattr(self, key)}")

    def _check_tls_files(self, bad) -> None:
        """Load the TLS files the way the client will, so a wrong file stops the device at startup with the key
        to fix instead of failing every handshake later."""
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            value = getattr(self, key)
            if not value:
                continue
            try:
                data = Path(value).read_bytes()
            except OSError as exc:
                raise bad(key, f"points to {value!r}, which cannot be read ({exc.strerror})") from exc
            if b"-----BEGIN " not in data:
                raise bad(key, f"{value!r} is not a PEM file (no '-----BEGIN' line): convert it with openssl")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.tls_ca_file:
            try:
                context.load_verify_locations(cafile=self.tls_ca_file)
            except ssl.SSLError as exc:
                raise bad("tls_ca_file", f"{self.tls_ca_file!r} holds no usable CA certificate ({exc.reason or exc})"
                          ) from exc
        if self.tls_cert_file:
            try:
                context.load_cert_chain(self.tls_cert_file, self.tls_key_file, password=lambda: b"")
            except ssl.SSLError as exc:
                raise bad("tls_key_file", f"{self.tls_key_file!r} does not match mqtt.tls_cert_file "
                                          f"{self.tls_cert_file!r}, or one of them is invalid or the key is encrypted "
                                          f"({exc.reason or exc}): give the unencrypted key of that certificate"
                          ) from exc

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls or self.tls_ca_file or self.tls_cert_file)

    def credentials(self) -> tuple[str | None, str | None]:
        """(username, password) with the environment overriding the config file."""
        username = os.environ.get(ENV_USERNAME) or self.username or None
        password = os.environ.get(ENV_PASSWORD) or self.password or None
        return username, password
