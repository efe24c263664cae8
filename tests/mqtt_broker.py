"""A real mosquitto broker on a free loopback port for the MQTT tests, plus a recording subscriber.

Tests get the `broker` fixture with `from tests.mqtt_broker import broker_fixture  # noqa: F401`.
"""

from __future__ import annotations

import os
import pwd
import random
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = "/usr/sbin/mosquitto"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port outside the kernel's ephemeral range.

    paho binds its client socket to port 0 before connecting, so while a broker is down a reconnecting client can be
    handed the broker's own port from the ephemeral range and connect to itself (TCP simultaneous open); the restarted
    broker then fails with "Address already in use". A port outside that range is never handed out that way.
    """
    low, high = _ephemeral_range()
    # Below the range as a rule; above it too when the range starts low (some images tune it to 1024-65535).
    candidates = list(range(max(1024, low - 12000), low)) + list(range(high + 1, 65536))
    if not candidates:
        raise RuntimeError(f"the ephemeral port range {low}-{high} leaves no port for a test broker")
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port outside the ephemeral range {low}-{high}")


def wait_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Broker:
    """One mosquitto process; stop() and start() again keep the same port and config."""

    def __init__(self, workdir: Path, port: int | None = None, password_file: Path | None = None,
                 persistence: bool = False, extra: str = ""):
        self.workdir = workdir
        self.port = port or free_port()
        self.config_path = workdir / f"mosquitto-{self.port}.conf"
        self.log_path = workdir / f"mosquitto-{self.port}.log"
        lines = [f"listener {self.port} 127.0.0.1",
                 f"user {pwd.getpwuid(os.getuid()).pw_name}",
                 f"allow_anonymous {'false' if password_file else 'true'}",
                 f"persistence {'true' if persistence else 'false'}"]
        if password_file:
            lines.append(f"password_file {password_file}")
        if persistence:
            lines.append(f"persistence_location {workdir}/")
        self.config_path.write_text("\n".join(lines) + "\n" + extra)
        self.process: subprocess.Popen | None = None

    def start(self) -> Broker:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config_path), "-v"], stdout=log, stderr=log)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError("mosquitto did not start:\n" + self.log())
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto closes client connections (and saves persistence) before exiting."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(name="broker")
def broker_fixture(tmp_path):
    """A running anonymous mosquitto broker, stopped at teardown."""
    instance = Broker(tmp_path).start()
    yield instance
    instance.stop()


def make_password_file(path: Path, username: str, password: str) -> Path:
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", "-c",
                    str(path), username, password], check=True, capture_output=True)
    path.chmod(0o600)
    return path


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    at: float


class Subscriber:
    """A paho client that records every message it receives; callbacks use VERSION2 like the code under test."""

    def __init__(self, port: int, topics: list[str], client_id: str = "", persistent: bool = False,
                 username: str | None = None, password: str | None = None):
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.topics = topics
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"sub-{time.monotonic_ns()}",
                                  protocol=paho.MQTTv311, clean_session=not persistent)
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda client, userdata, mid, codes, props: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise TimeoutError("test subscriber did not get SUBACK")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, client, userdata, message):
        with self._cond:
            self.messages.append(Received(message.topic, message.payload, message.qos, bool(message.retain),
                                          time.monotonic()))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        """Wait until predicate(messages) is true."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self.messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class V311OnlyProxy:
    """Stands in for a broker without MQTT 5: refuses a v5 CONNECT the way a 3.1.1 broker does
    (CONNACK return code 1, then close) and relays every other connection to the real broker."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refused_v5 = 0
        self.relayed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket):
        conn.settimeout(5)
        first = conn.recv(4096)
        # CONNECT: fixed header 0x10, remaining length, "\x00\x04MQTT", then the protocol level byte.
        if first[:1] == b"\x10" and b"MQTT" in first[:12]:
            level = first[first.index(b"MQTT") + 4]
            if level == 5:
                self.refused_v5 += 1
                conn.sendall(b"\x20\x02\x00\x01")
                conn.close()
                return
        self.relayed += 1
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        upstream.sendall(first)
        conn.settimeout(None)
        pair = {conn: upstream, upstream: conn}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select(list(pair), [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            conn.close()
            upstream.close()

    def close(self):
        self._stop.set()
        self.listener.close()
