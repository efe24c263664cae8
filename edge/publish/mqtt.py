"""Publish emotion events, state, availability, health and HA discovery over MQTT (paho-mqtt 2.x).

Delivery of events is at-least-once and in order: `publish_events` appends a batch of event JSON to
the on-disk spool in one SQLite transaction (`publish_event` is a batch of one); one sender thread
feeds the oldest spooled events to paho with a bounded number in flight, and deletes a spool row only
after `on_publish` reported the broker's PUBACK for its message id (in batches, on the sender thread:
paho's network thread never waits for SQLite). Paho keeps unacknowledged QoS 1 messages across
reconnects and resends them first; the sender waits for those before submitting newer ones, so order
holds across broker outages.
A message may arrive twice when a PUBACK is lost with the connection (duplicate `id`).

Faults are named once per change of `stats()["state"]` (connecting, connected, unreachable, tls_failed,
auth_failed, refused, stopped) with the fix in `stats()["last_error"]`; a condition that repeats (a retry
failing the same way, a refused publish) is counted and summarised once per ``edge.logsummary.Repeats`'s interval`:
- broker unreachable at `start()`: a warning; events are spooled and sent once it is reachable;
- TLS verification or handshake failure: state tls_failed, retried with backoff, never a plaintext fallback;
- credentials refused (or not authorised) at `start()`: EdgeError naming the fix (exit 2); refused later
  (the broker's password file changed while running): state auth_failed, retried with backoff;
- broker without MQTT 5: with protocol "auto" the client falls back to 3.1.1, with "5" EdgeError;
- a publish the broker refuses (MQTT 5 PUBACK reason >= 0x80, e.g. 0x87 not authorized by its ACL): the
  event moves to the spool's dead_letter table with the reason, counted in `dead_letters`; dead letters
  count in the spool's bounds and the oldest are purged first, so an ACL refusing everything cannot fill
  the disk. MQTT 3.1.1 has no reason codes: a broker that drops a publish its ACL denies still sends a
  plain PUBACK, so on 3.1.1 such events count as acknowledged and are lost; only the broker's own log
  shows the denial.

Liveness for hubs: `online` (retained) is published on every (re)connect and the broker publishes the
retained `offline` last will when the connection dies. A retained `online` can outlive the device (a broker
restored from persistence after the device went off), so on MQTT 5 the retained availability and states
carry a Message Expiry Interval of `retained_expiry_s` and are refreshed every third of it. The retained
health message (no expiry) has a `timestamp` heartbeat: on 3.1.1, where nothing expires, hubs compare it
with the health interval.

Each modality also has a retained `<modality>/availability`, online only while its input runs (the
source's state in the health report, `running` and not paused); it starts offline, so a previous run's
retained state is never shown as live. While a modality is online its latest state is re-sent with each
health report, so Home Assistant's `expire_after` only fires when nothing refreshes it.

Controls: the publisher subscribes to its own `<prefix>/<device>/set/#` and nothing else of the device
tree, so a command for another device never reaches it; each command goes through `Controls.apply`, a
refused one is logged once per (key, reason) and changes nothing, and the retained `controls` topic
echoes every control's value whenever one changes. A demo (`mqtt.demo`) empties its discovery configs and
retained topics when it stops, so Home Assistant removes the device.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..backoff import Backoff
from ..errors import EdgeError
from ..events import MODALITIES, Event, utc_timestamp
from ..health import cpu_temperature_c
from ..logsummary import Repeats
from .discovery import DeviceInfo, discovery_messages
from .settings import ENV_PASSWORD, ENV_USERNAME, MqttConfig
from .spool import SPOOL_FILENAME, Spool
from .topics import Topics

log = logging.getLogger(__name__)

ONLINE, OFFLINE = "online", "offline"

_PROTOCOLS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}
_UNSUPPORTED_PROTOCOL = 0x84
_AUTH_FAILURES = {0x86: "bad user name or password", 0x87: "not authorized", 0x8C: "bad authentication method"}


class _PahoLog(logging.LoggerAdapter):
    """paho's log for one client. paho logs every failed reconnect and lost socket at ERROR ("Client is not
    connected", "failed to receive on socket"); the publisher names those once per state change itself, so
    they are demoted to DEBUG. Exceptions raised in our callbacks ("Caught exception in ...") stay errors.
    A socket error paho only reports here (a TLS alert from the broker after the handshake) is passed on."""

    _NOISE = ("Client is not connected", "failed to receive on socket", "timeout on socket")

    def __init__(self, on_socket_error=None):
        super().__init__(logging.getLogger(__name__ + ".paho"), {})
        self.disconnecting = threading.Event()
        self._on_socket_error = on_socket_error

    def log(self, level, msg, *args, **kwargs):
        if level <= logging.DEBUG and not self.logger.isEnabledFor(level):
            return  # paho logs every packet at DEBUG: skip the rest unless someone listens
        text = str(msg)
        if text.startswith(self._NOISE):
            if self.disconnecting.is_set():
                return
            if self._on_socket_error and args and isinstance(args[0], ssl.SSLError):
                self._on_socket_error(args[0])
            level = min(level, logging.DEBUG)
        super().log(level, msg, *args, **kwargs)


class _Client(paho.Client):
    """paho's client with connection errors reported and jittered reconnect delays.

    paho swallows the exception of a failed (re)connect, so a certificate that fails verification looked
    like a broker that is down; `reconnect` hands it to `on_connect_error` first. `_reconnect_wait` is
    paho's hook between attempts; `disconnect()` cuts its wait short so shutdown stays fast.
    """

    def __init__(self, *args, on_connect_error, backoff: Backoff, **kwargs):
        super().__init__(*args, **kwargs)
        self._on_connect_error = on_connect_error
        self._backoff = backoff
        self._stop_waiting = threading.Event()

    def reconnect(self):
        try:
            return super().reconnect()
        except OSError as exc:
            self._on_connect_error(exc)
            raise

    def disconnect(self, *args, **kwargs):
        self._stop_waiting.set()
        return super().disconnect(*args, **kwargs)

    def _reconnect_wait(self) -> None:
        self._stop_waiting.wait(self._backoff.next())


class MqttPublisher:
    """Thread-safe publisher shared by all pipelines of one device."""

    def __init__(self, config: MqttConfig, device_id: str, modalities: list[str], spool_dir: Path,
                 info: DeviceInfo | None = None, controls=None):
        config.validate()
        if not device_id or any(c in device_id for c in "/+#\0"):
            raise EdgeError(f"device id {device_id!r} is used as an MQTT topic level: it must be non-empty "
                            "and contain no '/', '+' or '#'")
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown:
            raise EdgeError(f"unknown modalities {unknown}: choose from {list(MODALITIES)}")
        self.config = config
        self.device_id = device_id
        self.modalities = list(modalities)
        self.topics = Topics(config.topic_prefix, device_id)
        self.info = info or DeviceInfo(device_id, tuple(modalities), name=config.device_name,
                                       area=config.suggested_area, demo=config.demo,
                                       expire_after_s=config.expire_after_s or 60,
                                       track_events=config.ha_track_events)
        self.controls = controls  # edge.controls.Controls, or None: no command subscription
        self._available = {modality: False for modality in self.modalities}  # per-modality availability
        self._electrodes: tuple[str, ...] = ()  # EEG electrodes the health named (their quality entities)
        self._cpu_temperature = cpu_temperature_c() is not None
        self._controls_shown: str | None = None  # the controls payload last published
        self.spool = Spool(Path(spool_dir) / SPOOL_FILENAME, config.spool_max_events, config.spool_max_bytes)
        self._protocol = "5" if config.protocol in ("5", "auto") else "3.1.1"
        self._client: paho.Client | None = None
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()  # never held while calling into paho (paho calls back under its own locks)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._first_outcome = threading.Event()
        self._connected = False
        self._resync = False  # a reconnect happened: let paho resend in-flight messages before newer ones
        self._fallback_requested = False
        self._inflight: dict[int, tuple[int, str]] = {}  # paho mid -> (spool id, topic)
        self._settled: list[tuple[int, str, Any]] = []  # (spool id, topic, reason code) the spool has yet to apply
        self._early_acks: dict[int, Any] = {}  # PUBACKs that beat the mid registration
        self._last_submitted = 0
        self._last_refusal: tuple[int, str] | None = None
        self._sender: threading.Thread | None = None
        self._counters = {"connects": 0, "reconnects": 0, "disconnects": 0, "events_spooled": 0,
                          "events_acked": 0, "events_rejected": 0, "states_published": 0,
                          "health_published": 0, "discovery_published": 0, "connect_failures": 0,
                          "events_dropped_stopped": 0, "events_sent_unspooled": 0}
        self._last_error = ""
        self._state = "connecting"
        self._problem: tuple[str, str] | None = None  # (state, kind) of the connection problem last logged
        self._starting = False  # inside start(): a refused login is raised to the caller, not logged
        self._repeats = Repeats(log)
        self._backoff = Backoff(config.reconnect_min_delay_s, config.reconnect_max_delay_s)
        self._next_refresh = float("inf")
        self._unreachable = False  # the last TCP/TLS connection attempt failed
        self._closed = False

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; raises EdgeError when the broker refuses the configuration."""
        self._stopping.clear()
        self._starting = True
        try:
            self._start_and_wait()
        finally:
            self._starting = False

    def _start_and_wait(self) -> None:
        self._start_client()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._sender.start()
        deadline = time.monotonic() + self.config.connect_timeout_s
        while time.monotonic() < deadline:
            self._first_outcome.wait(0.05)
            self._first_outcome.clear()
            with self._lock:
                connected, refusal = self._connected, self._last_refusal
                unreachable, fallback = self._unreachable, self._fallback_requested
            if connected:
                return
            if refusal:
                self._stop_sender()
                self._shutdown_client()
                self.spool.close()
                self._closed = True
                self._state = "stopped"
                raise EdgeError(self._refusal_message(*refusal))
            if unreachable and not fallback:
                break
        log.info("MQTT events are spooled to %s and sent once broker %s:%d accepts the connection",
                 self.spool.path, self.config.host, self.config.port)

    def stop(self) -> None:
        """Flush what the broker accepts within drain_timeout_s, mark the device offline, disconnect."""
        if self._closed:
            return
        deadline = time.monotonic() + self.config.drain_timeout_s
        while self.is_connected() and self.spool.depth() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        self._stop_sender()
        self._apply_settled()
        client = self._client
        if client is not None and self.is_connected():
            for modality in self.modalities:
                client.publish(self.topics.modality_availability(modality), OFFLINE, qos=1, retain=True)
            if self.info.demo:
                self._remove_demo(client)
            info = client.publish(self.topics.availability, "" if self.info.demo else OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish offline availability: %s", exc)
        self._shutdown_client()
        self._apply_settled()
        self._repeats.flush()
        self.spool.close()
        self._closed = True
        with self._lock:
            self._state = "stopped"

    def _stop_sender(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._sender is not None and self._sender is not threading.current_thread():
            self._sender.join(timeout=5.0)
        self._sender = None

    def _start_client(self) -> None:
        cfg = self.config
        client_id = cfg.client_id or f"emotion-edge-{self.device_id}"
        protocol = _PROTOCOLS[self._protocol]
        client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                         transport=cfg.transport, reconnect_on_failure=True,
                         on_connect_error=self._on_connect_error, backoff=self._backoff)
        self._paho_log = _PahoLog(on_socket_error=self._on_connect_error)
        client.enable_logger(self._paho_log)
        username, password = cfg.credentials()
        if username is not None:
            client.username_pw_set(username, password)
        if cfg.uses_tls:
            try:
                client.tls_set(ca_certs=cfg.tls_ca_file or None, certfile=cfg.tls_cert_file or None,
                               keyfile=cfg.tls_key_file or None)
            except (OSError, ValueError) as exc:
                raise EdgeError(f"mqtt TLS files could not be loaded ({exc}): check mqtt.tls_ca_file, "
                                "mqtt.tls_cert_file and mqtt.tls_key_file") from exc
            client.tls_insecure_set(cfg.tls_insecure)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.max_inflight_messages_set(cfg.max_inflight + 10)  # room for state/discovery next to events
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        with self._lock:
            self._inflight.clear()
            self._early_acks.clear()
            self._last_submitted = 0
            self._resync = False
            self._fallback_requested = False
            self._last_refusal = None
            self._unreachable = False
        self._client = client
        client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        client.loop_start()

    def _shutdown_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        self._paho_log.disconnecting.set()
        client.disconnect()
        client.loop_stop()
        with self._lock:
            self._connected = False

    # ---- paho callbacks (network thread) -------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            code = reason_code.value
            fallback = code == _UNSUPPORTED_PROTOCOL and self.config.protocol == "auto" and self._protocol == "5"
            with self._lock:
                self._counters["connect_failures"] += 1
                if fallback:
                    self._fallback_requested = True
                    self._wake.set()
                else:
                    self._last_refusal = (code, str(reason_code))
            if fallback:
                log.warning("MQTT broker %s:%d does not speak MQTT 5; falling back to 3.1.1",
                            self.config.host, self.config.port)
            else:
                state = "auth_failed" if code in _AUTH_FAILURES else "refused"
                self._set_state(state, self._refusal_message(code, str(reason_code)), f"connack-{code}",
                                quiet=self._starting)
            self._first_outcome.set()
            return
        self._backoff.reset()
        with self._lock:
            reconnect = self._counters["connects"] > 0
            self._counters["connects"] += 1
            if reconnect:
                self._counters["reconnects"] += 1
            self._connected = True
            self._unreachable = False
            self._last_refusal = None
            self._last_error = ""
            self._state, self._problem = "connected", None
            self._repeats.forget("connection")
        (log.warning if reconnect else log.info)("MQTT connected to %s:%d (MQTT %s)%s", self.config.host,
                                                  self.config.port, self._protocol, " again" if reconnect else "")
        self._publish_retained(client, discovery=self.config.discovery)
        if self.config.discovery:
            client.subscribe(f"{self.config.discovery_prefix}/status", qos=1)
        if self.controls is not None:
            self._controls_shown = None
            self._echo_controls(client)
            client.subscribe(self.topics.commands, qos=1)
        self._first_outcome.set()
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        with self._lock:
            self._counters["connect_failures"] += 1
            self._unreachable = True
        self._first_outcome.set()

    def _on_connect_error(self, exc: BaseException) -> None:
        """The exception of a failed TCP/TLS connection attempt (paho thread), named with its fix."""
        host, where = self.config.host, f"{self.config.host}:{self.config.port}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = str(exc.verify_message).rstrip(".")
            kind, state = "verify", "tls_failed"
            error = (f"TLS: certificate verify failed ({why}: wrong CA or hostname mismatch for host {host}): "
                     "fix mqtt.tls_ca_file or mqtt.host")
        elif isinstance(exc, ssl.SSLError):
            # The broker's alert and a bare EOF alternate for one cause (a required client certificate): one kind.
            kind, state = "handshake", "tls_failed"
            error = (f"TLS: handshake with {where} failed ({exc.reason or exc}): check that mqtt.port is the "
                     "broker's TLS listener and, if it requires client certificates, mqtt.tls_cert_file and "
                     "mqtt.tls_key_file")
        elif isinstance(exc, socket.gaierror):
            kind, state = "dns", "unreachable"
            error = f"cannot resolve broker host {host!r} ({exc.strerror}): fix mqtt.host"
        elif isinstance(exc, ConnectionRefusedError):
            kind, state = "refused", "unreachable"
            error = f"broker {where} refused the TCP connection: broker down or wrong mqtt.port"
        elif isinstance(exc, TimeoutError):
            kind, state = "timeout", "unreachable"
            error = f"no answer from broker {where}: broker down, firewall, or wrong mqtt.host"
        else:
            kind, state = type(exc).__name__, "unreachable"
            error = f"cannot connect to broker {where}: {exc}"
        self._set_state(state, error, kind)

    def _set_state(self, state: str, error: str, kind: str, quiet: bool = False) -> None:
        """Record a connection problem; logged once per change of (state, kind), repeats only summarised."""
        with self._lock:
            if self._stopping.is_set() and self._state == "stopped":
                return
            changed = (state, kind) != self._problem
            self._state, self._last_error, self._problem = state, error, (state, kind)
        if quiet:
            return
        if changed:
            self._repeats.forget("connection")
        cap = self.config.reconnect_max_delay_s
        self._repeats.note(("connection", state, kind), logging.WARNING,
                           f"MQTT {state}: {error}; retrying with backoff (at most {cap:g} s)")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            was_connected = self._connected
            self._connected = False
            if was_connected:
                self._counters["disconnects"] += 1
                self._resync = bool(self._inflight)
                if not self._stopping.is_set():
                    self._state, self._last_error = "connecting", f"connection lost ({reason_code})"
        if was_connected and not self._stopping.is_set():
            log.warning("MQTT connection lost (%s); spooling events until the broker is back", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                self._early_acks[mid] = (reason_code, time.monotonic())
                return
            self._settle(entry[0], entry[1], reason_code)

    def _settle(self, spool_id: int, topic: str, reason_code) -> None:
        """Called with self._lock held: the broker answered for one spooled event. The spool is updated by the
        sender thread (`_apply_settled`), in one transaction per batch, so paho's network thread never waits
        for SQLite."""
        self._settled.append((spool_id, topic, reason_code))
        if not self._inflight:
            self._resync = False
        self._wake.set()

    def _apply_settled(self) -> None:
        """Delete acknowledged events and set aside refused ones, a batch at a time (sender thread, or stop())."""
        with self._lock:
            settled, self._settled = self._settled, []
        if not settled:
            return
        acked = [spool_id for spool_id, _, code in settled if not code.is_failure]
        refused = [(spool_id, topic, f"{code} (0x{code.value:02X})") for spool_id, topic, code in settled
                   if code.is_failure]
        if acked:
            self.spool.ack_many(acked)
        if refused:
            # The broker will never take these messages (e.g. its ACL denies the topic): keep them aside with
            # the reason so the queue moves on; they stay until the spool's bounds need their room.
            self.spool.set_aside_many((spool_id, reason) for spool_id, _, reason in refused)
        with self._lock:
            self._counters["events_acked"] += len(acked)
            self._counters["events_rejected"] += len(refused)
            if refused:
                self._last_error = f"broker refused events on {refused[-1][1]}: {refused[-1][2]}"
        for _, topic, reason in refused:
            self._repeats.note(("refused", topic, reason), logging.WARNING,
                               f"MQTT broker refused events on {topic} ({reason}); they are kept in the "
                               f"dead_letter table of {self.spool.path}: allow this topic in the broker's ACL")

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == f"{self.config.discovery_prefix}/status" and message.payload.strip() == b"online":
            log.info("Home Assistant came online; re-sending discovery")
            self._publish_retained(client, discovery=True)
            return
        key = self.topics.command_key(message.topic)
        if key is None or self.controls is None or message.retain:
            return  # a retained command would replay at every reconnect: only live commands count
        try:
            text = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        reason = "payload is not UTF-8 text" if text is None else self.controls.apply(key, text)
        if reason is not None:
            self._repeats.note(("control", key, reason), logging.WARNING,
                               "refused the command on %s: %s", message.topic, reason)
            return
        log.info("control %s set to %s", key, text.strip()[:40])
        self._echo_controls(client)

    def _echo_controls(self, client: paho.Client) -> None:
        """The retained controls topic, published when a value changed (a pause takes effect on the worker's
        thread, so the sender thread checks again every 0.5 s)."""
        if self.controls is None:
            return
        payload = json.dumps(self.controls.state(), separators=(",", ":"), sort_keys=True)
        with self._lock:
            if payload == self._controls_shown:
                return
            self._controls_shown = payload
        client.publish(self.topics.controls, payload, qos=1, retain=True)

    def _echo_controls_if_connected(self) -> None:
        """A switched pause shows within the sender's wake-up (0.5 s), not only with the next health report."""
        client = self._client
        if self.controls is not None and client is not None and self.is_connected():
            self._echo_controls(client)

    def _publish_availability(self, client: paho.Client, modalities) -> None:
        expiry = self._expiry()
        with self._lock:
            values = {modality: self._available[modality] for modality in modalities}
        for modality, online in values.items():
            client.publish(self.topics.modality_availability(modality), ONLINE if online else OFFLINE, qos=1,
                           retain=True, properties=expiry)

    def _remove_demo(self, client: paho.Client) -> None:
        """Empty the demo's discovery configs and retained topics: HA removes the entities and the device."""
        for topic, payload in discovery_messages(self.info, self.topics, self.config.discovery_prefix,
                                                 self._electrodes, self._cpu_temperature, remove=True):
            client.publish(topic, payload, qos=1, retain=True)
        for topic in [self.topics.health, self.topics.controls,
                      *(self.topics.state(m) for m in self.modalities),
                      *(self.topics.modality_availability(m) for m in self.modalities)]:
            client.publish(topic, "", qos=1, retain=True)
        log.info("demo device removed from Home Assistant (empty discovery configs)")

    def _expiry(self) -> Properties | None:
        """MQTT 5 Message Expiry Interval for retained liveness messages (None on 3.1.1 or when disabled)."""
        if self._protocol != "5" or not self.config.retained_expiry_s:
            return None
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = int(self.config.retained_expiry_s)
        return properties

    def _publish_retained(self, client: paho.Client, discovery: bool = False) -> None:
        """`online` and the latest states, retained (with expiry on MQTT 5); on connect and every third of the
        expiry so they never lapse while the device runs."""
        expiry = self._expiry()
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True, properties=expiry)
        self._publish_availability(client, self.modalities)
        if discovery:
            self._publish_discovery(client)
        with self._lock:
            states = list(self._states.items())
            if self.config.retained_expiry_s:
                self._next_refresh = time.monotonic() + self.config.retained_expiry_s / 3
        for modality, payload in states:
            client.publish(self.topics.state(modality), payload, qos=1, retain=True, properties=expiry)

    def _publish_discovery(self, client: paho.Client) -> None:
        for topic, payload in discovery_messages(self.info, self.topics, self.config.discovery_prefix,
                                                 self._electrodes, self._cpu_temperature):
            client.publish(topic, payload, qos=1, retain=True)
        with self._lock:
            self._counters["discovery_published"] += 1

    # ---- sender thread --------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                if self._fallback_requested:
                    self._fall_back()
                    continue
                self._apply_settled()
                self._refresh_retained()
                self._submit_ready()
                self._echo_controls_if_connected()
            except Exception:  # a long-running loop must survive; the spool still holds the events
                log.exception("MQTT sender error; retrying")
                time.sleep(0.5)

    def _refresh_retained(self) -> None:
        with self._lock:
            due = self._connected and time.monotonic() >= self._next_refresh
        client = self._client
        if due and client is not None:
            self._publish_retained(client)

    def _fall_back(self) -> None:
        self._shutdown_client()
        self._protocol = "3.1.1"
        self._start_client()

    def _submit_ready(self) -> None:
        client = self._client
        if client is None:
            return
        with self._lock:
            if not self._connected or self._resync:
                return
            room = self.config.max_inflight - len(self._inflight)
            after = self._last_submitted
        self._prune_early_acks()
        if room <= 0:
            return
        for message in self.spool.peek(after_id=after, limit=room):
            info = client.publish(message.topic, message.payload, qos=message.qos, retain=False)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self._repeats.note(("paho_refused", info.rc), logging.WARNING, "paho refused an event (%s); will retry",
                                   paho.error_string(info.rc))
                return
            # NO_CONN still queues a QoS>0 message inside paho; it is sent on reconnect.
            with self._lock:
                self._last_submitted = message.id
                early = self._early_acks.pop(info.mid, None)
                if early is not None:
                    self._settle(message.id, message.topic, early[0])
                else:
                    self._inflight[info.mid] = (message.id, message.topic)
                if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                    self._resync = True
                    return

    def _prune_early_acks(self) -> None:
        """Acks of non-event messages (state, discovery) also land in _early_acks; forget them soon
        so a wrapped-around mid can never match a stale entry."""
        horizon = time.monotonic() - 10.0
        with self._lock:
            for mid in [m for m, (_, seen) in self._early_acks.items() if seen < horizon]:
                del self._early_acks[mid]

    # ---- public API (any thread) -----------------------------------------------------------------

    def publish_event(self, event: Event) -> None:
        """Spool the event as created (its own timestamp and seq) and deliver it as soon as possible."""
        self.publish_events([event])

    def publish_events(self, events: list[Event]) -> int:
        """Spool a batch of events in one SQLite transaction, in order, and deliver them as soon as possible;
        returns how many were stored. Same bounds and drops as `publish_event` (a full or failing disk drops the
        batch, counted in `spool_drops`, and sent at once without a spool row while the broker is connected, at most
        once and possibly ahead of an older backlog); much cheaper per event, so a sink thread passes what it has."""
        if not events:
            return 0
        if self._closed:
            with self._lock:
                self._counters["events_dropped_stopped"] += len(events)
                total = self._counters["events_dropped_stopped"]
            self._repeats.note("stopped", logging.WARNING, "MQTT publisher is stopped; %d event(s) not spooled "
                               "(%d so far, the last one %s of %s)", len(events), total, events[-1].id,
                               events[-1].modality)
            return 0
        qos = self.config.qos
        messages = [(self.topics.event(event.modality), event.to_json(), qos) for event in events]
        ids = self.spool.append_many(messages)
        stored = len(ids) - ids.count(None)
        unspooled = [message for message, spool_id in zip(messages, ids) if spool_id is None]
        client = self._client
        sent = 0
        if unspooled and client is not None and self.is_connected():
            # The spool could not keep them (a full disk): sent now, at most once, rather than not at all.
            for topic, payload, message_qos in unspooled:
                sent += client.publish(topic, payload, qos=message_qos).rc == MQTTErrorCode.MQTT_ERR_SUCCESS
        with self._lock:
            self._counters["events_spooled"] += stored
            self._counters["events_sent_unspooled"] += sent
        self._wake.set()
        return stored

    def publish_state(self, modality: str, state: dict[str, Any]) -> None:
        """Retained latest state of a modality; kept in memory and re-sent after each (re)connect."""
        if modality not in MODALITIES:
            raise EdgeError(f"unknown modality {modality!r}: choose from {list(MODALITIES)}")
        payload = json.dumps(state, separators=(",", ":"))
        with self._lock:
            self._states[modality] = payload
            connected = self._connected
            if connected:
                self._counters["states_published"] += 1
        client = self._client
        if connected and client is not None:
            client.publish(self.topics.state(modality), payload, qos=1, retain=True, properties=self._expiry())

    def publish_health(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Publish pipeline metrics plus MQTT/spool counters and CPU temperature; returns the payload.

        Skipped while disconnected: health is periodic and only the latest value matters. Its `timestamp` is
        the heartbeat a hub compares with the health interval to tell a dead device (on MQTT 3.1.1 the only
        way); it carries no expiry, so the last health stays as the device's "last seen".
        """
        stats = self.stats()
        payload = {
            "timestamp": utc_timestamp(),
            "device_id": self.device_id,
            **metrics,
            "reconnects": stats["reconnects"],
            "spool_depth": stats["spool_depth"],
            "spool_dropped": stats["spool_dropped"],
            "dead_letters": stats["dead_letters"],
            "cpu_temp_c": cpu_temperature_c(),
            "mqtt": stats,
        }
        client = self._client
        if stats["connected"] and client is not None:
            client.publish(self.topics.health, json.dumps(payload, separators=(",", ":")), qos=0, retain=True)
            with self._lock:
                self._counters["health_published"] += 1
            self._follow_health(client, metrics)
        return payload

    def _follow_health(self, client: paho.Client, metrics: dict[str, Any]) -> None:
        """Per-modality availability from the sources' states, the states of running modalities refreshed
        (HA's expire_after), EEG electrode entities as the stream names them, and the controls echo."""
        available = {}
        for modality in self.modalities:
            part = metrics.get(modality)
            if modality == "fused":
                continue
            state = part.get("camera_state", part.get("source_state")) if isinstance(part, dict) else None
            available[modality] = state == "running" and not part.get("paused", False)
        if "fused" in self.modalities:
            available["fused"] = any(available.values())
        eeg = metrics.get("eeg") if isinstance(metrics.get("eeg"), dict) else {}
        electrodes = tuple(eeg.get("electrodes") or ()) if "eeg" in self.modalities else ()
        with self._lock:
            changed = [m for m, online in available.items() if self._available.get(m) != online]
            self._available.update(available)
            states = [(m, self._states[m]) for m, online in available.items() if online and m in self._states]
            rediscover = bool(electrodes) and electrodes != self._electrodes
            if rediscover:
                self._electrodes = electrodes
        if changed:
            log.info("availability: %s", ", ".join(f"{m} {'online' if available[m] else 'offline'}"
                                                   for m in changed))
            self._publish_availability(client, changed)
        expiry = self._expiry()
        for modality, payload in states:
            client.publish(self.topics.state(modality), payload, qos=1, retain=True, properties=expiry)
        if rediscover and self.config.discovery:
            self._publish_discovery(client)
        self._echo_controls(client)

    def availability(self) -> dict[str, bool]:
        """Each modality's availability as last published."""
        with self._lock:
            return dict(self._available)

    def is_connected(self) -> bool:
        with self._lock:
            return self._connected

    def stats(self) -> dict[str, Any]:
        with self._lock:
            stats: dict[str, Any] = dict(self._counters)
            stats.update(connected=self._connected, state=self._state, protocol=self._protocol,
                         inflight=len(self._inflight), last_error=self._last_error,
                         reconnect_delays_s=[round(d, 2) for d in self._backoff.delays[-5:]])
        stats.update(spool_depth=self.spool.depth(), spool_dropped=self.spool.dropped,
                     spool_drops=self.spool.drops, dead_letters=self.spool.dead_letters())
        return stats

    def _refusal_message(self, code: int, reason: str) -> str:
        where = f"{self.config.host}:{self.config.port}"
        if code in _AUTH_FAILURES:
            return (f"MQTT broker {where} refused the login ({_AUTH_FAILURES[code]}): set mqtt.username and "
                    f"mqtt.password, or the {ENV_USERNAME} and {ENV_PASSWORD} environment variables")
        if code == _UNSUPPORTED_PROTOCOL:
            return (f"MQTT broker {where} does not support MQTT {self._protocol}: set mqtt.protocol to "
                    '"3.1.1" or "auto"')
        return f"MQTT broker {where} refused the connection ({reason}): check the mqtt section of the config"
