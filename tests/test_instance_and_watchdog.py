"""One runtime per data dir, the plaintext-password warning, and the systemd notify/watchdog protocol,
with real processes, a real broker and a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from edge.demo import build_demo_video
from edge.network import is_loopback
from tests.mqtt_broker import Subscriber, broker_fixture  # noqa: F401

from .conftest import ROOT
from .runtime_helpers import finish, kill, output, runtime_config, start_runtime, toml_text, wait_for

PREFIX = "emotion_edge/testdev"


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    return build_demo_video(tmp_path_factory.mktemp("video") / "demo.avi")


def test_second_instance_on_one_data_dir_exits_2_naming_the_holder(broker, face_models, demo_video, tmp_path):
    config = runtime_config(tmp_path, face_models, demo_video, broker.port, camera={"on_end": "loop"})
    first = start_runtime(tmp_path, config)
    try:
        watcher = Subscriber(broker.port, [f"{PREFIX}/availability"])
        assert watcher.wait_for(lambda msgs: any(m.payload == b"online" for m in msgs), timeout=60), \
            output(first)[1][-3000:]
        second = start_runtime(tmp_path, config)
        _, stderr = finish(second, 120)
        assert second.returncode == 2, stderr[-3000:]
        errors = [line for line in stderr.splitlines() if "error" in line.lower()]
        assert errors == [f"emotion-edge: error: device.data_dir {tmp_path / 'data'} is in use by another "
                          f"emotion-edge (PID {first.pid}); stop that one, or give this instance its own "
                          "device.data_dir and device.id"], stderr[-3000:]
        time.sleep(1.0)
        assert first.poll() is None
        assert [m.payload for m in watcher.messages] == [b"online"]  # the first one was never knocked off
        watcher.close()
        first.send_signal(signal.SIGTERM)
        _, stderr = finish(first, 60)
        assert first.returncode == 0, stderr[-3000:]
    finally:
        kill(first)
    again = start_runtime(tmp_path, config, "--duration", "1")  # the lock went with the process
    _, stderr = finish(again, 120)
    assert again.returncode == 0, stderr[-3000:]


def _run_with_password(tmp_path, face_models, demo_video, host: str, env_password: bool) -> str:
    mqtt = {"host": host, "port": 1, "connect_timeout_s": 0.2, "drain_timeout_s": 0.1}
    if not env_password:
        mqtt["password"], mqtt["username"] = "secret", "edge"
    config = runtime_config(tmp_path, face_models, demo_video, 1, mqtt=mqtt)
    path = tmp_path / f"password-{uuid.uuid4().hex}.toml"
    path.write_text(toml_text(config))
    env = dict(os.environ, EMOTION_EDGE_MQTT_USERNAME="edge", EMOTION_EDGE_MQTT_PASSWORD="secret") \
        if env_password else {k: v for k, v in os.environ.items() if not k.startswith("EMOTION_EDGE_MQTT_")}
    result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(path), "--duration", "0.5"],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    return result.stderr


@pytest.mark.parametrize("env_password", [False, True], ids=["config", "environment"])
def test_password_without_tls_to_a_remote_broker_warns_once(tmp_path, face_models, demo_video, env_password):
    stderr = _run_with_password(tmp_path, face_models, demo_video, "192.0.2.7", env_password)
    warnings = [line for line in stderr.splitlines() if "password will be sent unencrypted" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "192.0.2.7" in warnings[0], stderr[-3000:]
    assert "mqtt.tls = true" in warnings[0] and "secret" not in stderr
    stderr = _run_with_password(tmp_path, face_models, demo_video, "127.0.0.1", env_password)
    assert "unencrypted" not in stderr, stderr[-3000:]


def test_loopback_hosts():
    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("192.0.2.7", "broker.lan", "10.0.0.1", "localhost.example.com"))


class NotifySocket:
    """What systemd listens on: a unix datagram socket; records (arrival time, message)."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self):
        while not self._stop.is_set():
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except (socket.timeout, TimeoutError):
                continue

    def times(self, message: str) -> list[float]:
        return [at for at, text in list(self.messages) if text == message]

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm for a FIFO the camera opens as a device")
def test_watchdog_is_fed_while_frames_flow_and_starves_when_the_camera_read_hangs(broker, face_models, demo_video,
                                                                                 tmp_path):
    """The camera is a FIFO fed with the demo video in slices: frames flow while the test writes, then the writer
    stops without closing, so the capture thread blocks in a real read forever. WATCHDOG=1 must stop."""
    fifo = Path("/dev/shm") / f"emotion-edge-test-{uuid.uuid4().hex}"  # a /dev path is opened as a live device
    os.mkfifo(fifo)
    notify = NotifySocket(tmp_path / "notify")
    watchdog_s = 4.0  # pings every 1 s; a pipeline counts as hung after 2 s without progress
    config = runtime_config(tmp_path, face_models, demo_video, broker.port,
                            camera={"source": str(fifo), "on_end": "loop", "reconnect_max_s": 0.5,
                                    "open_timeout_s": 0.5, "read_timeout_s": 0.5})
    path = tmp_path / "watchdog.toml"
    path.write_text(toml_text(config))
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC=str(int(watchdog_s * 1e6)),
               PYTHONUNBUFFERED="1")
    err_path = tmp_path / "watchdog.err"
    with open(err_path, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(path)],
                                   stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env)
    writer = None
    try:
        def open_writer():  # succeeds once the camera has opened the FIFO for reading
            nonlocal writer
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                return False
            os.set_blocking(fd, True)
            writer = os.fdopen(fd, "wb")
            return True

        assert wait_for(open_writer, 60), err_path.read_text()[-3000:]
        video = demo_video.read_bytes()
        assert wait_for(lambda: notify.times("READY=1"), 60), err_path.read_text()[-3000:]
        flowing_from = time.monotonic()
        sent = 0
        while time.monotonic() - flowing_from < 5.0 and sent < len(video):
            writer.write(video[sent:sent + 16384])
            writer.flush()
            sent += 16384
            time.sleep(0.1)
        hung_at = time.monotonic()
        assert sent < len(video)  # the writer stops mid-stream: the next read blocks
        pings = [at for at in notify.times("WATCHDOG=1") if flowing_from <= at <= hung_at]
        assert len(pings) >= 3, (notify.messages, err_path.read_text()[-3000:])
        time.sleep(8.0)
        late = [round(at - hung_at, 2) for at in notify.times("WATCHDOG=1") if at > hung_at]
        # after the last frame: at most 2 s until it counts as hung, plus one 1 s ping interval
        assert not [at for at in late if at > 2.0 + 1.0 + 0.5], (late, err_path.read_text()[-3000:])
        assert process.poll() is None
        assert "face pipeline made no progress" in err_path.read_text()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert process.returncode == 0, err_path.read_text()[-3000:]
        assert notify.times("STOPPING=1")
    finally:
        kill(process)
        if writer is not None:
            try:
                writer.close()
            except BrokenPipeError:
                pass
        notify.close()
        fifo.unlink()


def test_eeg_waiting_for_a_headband_keeps_feeding_the_watchdog(broker, tmp_path):
    """No headband switched on: the EEG source keeps resolving (a legitimate wait, not a hang), so the watchdog
    is fed for the whole run instead of systemd restarting a device that is merely waiting."""
    notify = NotifySocket(tmp_path / "notify")
    config = {
        "device": {"id": "eegdev", "data_dir": str(tmp_path / "data"), "health_interval_s": 0.5},
        "face": {"enabled": False},
        "eeg": {"enabled": True},
        "lsl": {"source_id": f"absent-{uuid.uuid4().hex[:8]}", "resolve_timeout_s": 0.2, "backoff_initial_s": 0.2,
                "backoff_max_s": 0.5},  # retries at least every 1.3 s, well inside the 2 s the test allows
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "connect_timeout_s": 2.0},
    }
    path = tmp_path / "eeg.toml"
    path.write_text(toml_text(config))
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="4000000", PYTHONUNBUFFERED="1")
    try:
        result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(path), "--duration", "8"],
                                capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        ready = notify.times("READY=1")
        assert ready, (notify.messages, result.stderr[-3000:])
        pings = [round(at - ready[0], 2) for at in notify.times("WATCHDOG=1")]
        assert pings and max(pings) > 7.0 and "made no progress" not in result.stderr, (pings, result.stderr[-3000:])
    finally:
        notify.close()


def test_notify_socket_in_the_abstract_namespace():
    """systemd may pass NOTIFY_SOCKET as '@name' (Linux abstract namespace), which has no file to connect to."""
    from edge.runtime import SystemdNotifier

    name = f"emotion-edge-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(2)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "30000000"})
        notifier.notify("READY=1")
        assert listener.recv(100) == b"READY=1"
        assert notifier.watchdog_s == 30.0
        notifier.close()
    other = SystemdNotifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None  # the watchdog is meant for another process
    other.close()
