"""MqttPublisher against a real mosquitto: topics, QoS/retain, last will, broker restarts, auth, MQTT 5 fallback."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from tests.mqtt_broker import (  # noqa: F401
    Broker,
    Subscriber,
    V311OnlyProxy,
    broker_fixture,
    free_port,
    make_password_file,
)

from edge.errors import EdgeError
from edge.events import EVENT_JSON_SCHEMA, Event, utc_timestamp
from edge.health import cpu_temperature_c
from edge.publish import MqttConfig, MqttPublisher

REPO = Path(__file__).resolve().parents[1]
PREFIX = "emotion_edge/dev1"


def make_event(i: int, modality: str = "face") -> Event:
    labels = {"happy": 0.7, "neutral": 0.2, "sad": 0.1}
    return Event(device_id="dev1", modality=modality, kind="emotion", track_id=f"t{i % 3}", label="happy",
                 confidence=0.7, probabilities=labels, valence=0.55, arousal=0.31,
                 timestamp=utc_timestamp(time.time() - 0.001 * i), model={"id": "m", "sha256": "ab", "estimator":
                                                                          "classifier"},
                 latency_ms=12.5 + i, extra={"i": i})


def config(port: int, **overrides) -> MqttConfig:
    cfg = MqttConfig(host="127.0.0.1", port=port, discovery=False, reconnect_min_delay_s=0.2,
                     reconnect_max_delay_s=1.0, connect_timeout_s=3.0, drain_timeout_s=3.0)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def retained(port: int, topic: str, timeout: float = 2.0):
    """What a fresh subscriber gets for `topic` right after subscribing (retained messages only)."""
    sub = Subscriber(port, [topic])
    try:
        sub.wait_for(lambda msgs: any(m.topic == topic for m in msgs), timeout)
        return sub.on(topic)
    finally:
        sub.close()


def test_events_state_health_availability_topics(broker, tmp_path):
    sub = Subscriber(broker.port, [f"{PREFIX}/#"])
    pub = MqttPublisher(config(broker.port), "dev1", ["face", "voice"], tmp_path / "spool")
    pub.start()
    try:
        assert pub.is_connected()
        events = [make_event(i, "face" if i % 2 else "voice") for i in range(10)]
        for event in events:
            pub.publish_event(event)
        pub.publish_state("face", {"label": "happy", "confidence": 0.7, "valence": 0.55, "arousal": 0.31,
                                   "timestamp": events[-1].timestamp, "track_id": "t1", "tracks": 1})
        got = lambda msgs: len([m for m in msgs if m.topic.endswith("/event")]) == 10
        assert sub.wait_for(got, 5), [m.topic for m in sub.messages]

        received = [m for m in sub.messages if m.topic.endswith("/event")]
        for message, event in zip(received, events):
            body = json.loads(message.payload)
            jsonschema.validate(body, EVENT_JSON_SCHEMA)
            assert body == event.to_dict()  # the event as created, original timestamp included
            assert message.topic == f"{PREFIX}/{event.modality}/event"
            assert message.qos == 1 and message.retain is False
        # on_publish (VERSION2 signature) really fired: every spooled event was acknowledged and deleted.
        deadline = time.monotonic() + 2
        while pub.stats()["events_acked"] < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = pub.stats()
        assert stats["events_acked"] == 10 and stats["spool_depth"] == 0 and stats["inflight"] == 0
        assert stats["protocol"] == "5" and stats["connects"] == 1
        health = pub.publish_health({"fps": 14.8, "latency_ms": {"detect": 9.1}, "dropped_frames": 2})
        assert health["spool_depth"] == 0 and health["fps"] == 14.8 and "cpu_temp_c" in health

        # The broker has the health message (QoS 0) before the late subscriber connects, so it arrives retained.
        assert sub.wait_for(lambda msgs: any(m.topic == f"{PREFIX}/health" for m in msgs), 5)
        # A late subscriber sees retained availability, state and health, and no (unretained) events.
        late = Subscriber(broker.port, [f"{PREFIX}/#"])
        assert late.wait_for(lambda msgs: len(msgs) >= 3, 3)
        time.sleep(0.3)
        by_topic = {m.topic: m for m in late.messages}
        late.close()
        assert set(by_topic) == {f"{PREFIX}/availability", f"{PREFIX}/face/state", f"{PREFIX}/health",
                                 f"{PREFIX}/face/availability", f"{PREFIX}/voice/availability"}
        assert by_topic[f"{PREFIX}/availability"].payload == b"online"
        # the health named no running camera: the face's own availability stays offline
        assert by_topic[f"{PREFIX}/face/availability"].payload == by_topic[f"{PREFIX}/voice/availability"].payload \
            == b"offline"
        assert all(m.retain for m in by_topic.values())
        assert json.loads(by_topic[f"{PREFIX}/face/state"].payload)["label"] == "happy"
        health_body = json.loads(by_topic[f"{PREFIX}/health"].payload)
        assert {"fps", "latency_ms", "dropped_frames", "reconnects", "spool_depth", "spool_dropped",
                "cpu_temp_c"} <= set(health_body)
    finally:
        pub.stop()
        sub.close()
    offline = retained(broker.port, f"{PREFIX}/availability")
    assert [m.payload for m in offline] == [b"offline"] and offline[0].retain


CHILD_PUBLISHER = """
import sys, time
from pathlib import Path
from edge.publish import MqttConfig, MqttPublisher
from edge.events import Event, utc_timestamp
port, spool, keepalive, count, max_events = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=port, keepalive=keepalive, discovery=False,
                               connect_timeout_s=2.0, spool_max_events=max_events), "dev1", ["face"], spool)
pub.start()
for i in range(count):
    pub.publish_event(Event(device_id="dev1", modality="face", kind="emotion", track_id="t", label="sad",
                            confidence=0.9, probabilities={"sad": 0.9}, valence=-0.6, arousal=-0.2,
                            timestamp=utc_timestamp(), model={"id": "m", "sha256": "x", "estimator": "classifier"},
                            latency_ms=5.0, extra={"i": i}))
stats = pub.stats()
print("ready", stats["connected"], stats["spool_depth"], stats["spool_dropped"], flush=True)
time.sleep(120)
"""


def run_child(port: int, spool: Path, keepalive: int = 2, count: int = 0, max_events: int = 1000):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", CHILD_PUBLISHER, str(port), str(spool), str(keepalive),
                              str(count), str(max_events)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, text=True)
    ready, _, _ = select.select([child.stdout], [], [], 60)
    line = child.stdout.readline().split() if ready else []
    if not line or line[0] != "ready":
        child.kill()
        raise AssertionError("child publisher failed or was not ready within 60 s: " + child.stderr.read())
    return child, line[1:]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_last_will_marks_offline_when_process_dies(broker, tmp_path, how):
    """SIGKILL: the kernel closes the socket, the broker sends the will at once. SIGSTOP: the socket
    stays open but silent, as on a power or network loss, so only keepalive expiry (1.5 x 2 s) fires it."""
    child, status = run_child(broker.port, tmp_path / "spool", keepalive=2)
    try:
        assert status[0] == "True"
        assert [m.payload for m in retained(broker.port, f"{PREFIX}/availability")] == [b"online"]
        child.send_signal(getattr(signal, how))
        stopped = time.monotonic()
        payload = None
        while time.monotonic() - stopped < 10:
            messages = retained(broker.port, f"{PREFIX}/availability", timeout=1)
            payload = messages[-1].payload if messages else None
            if payload == b"offline":
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - stopped
        assert payload == b"offline", f"availability still {payload!r} {elapsed:.1f} s after {how}"
        final = retained(broker.port, f"{PREFIX}/availability")  # the poll may have caught the live copy
        assert [(m.payload, m.retain) for m in final] == [(b"offline", True)]
        if how == "SIGSTOP":
            # The broker waits 1.5 x keepalive (3 s) after the child's last packet, which paho sent at most one
            # keepalive (2 s) before the stop: the will cannot come sooner than 1 s after SIGSTOP.
            assert elapsed >= 1.0, "will fired before the keepalive could have expired"
        print(f"last will 'offline' seen {elapsed:.2f} s after {how} (keepalive 2 s)")
    finally:
        child.kill()
        child.wait()


def test_broker_restart_mid_stream_loses_no_event(tmp_path):
    broker = Broker(tmp_path, persistence=True).start()
    sub = Subscriber(broker.port, [f"{PREFIX}/face/event"], client_id="restart-sub", persistent=True)
    pub = MqttPublisher(config(broker.port), "dev1", ["face"], tmp_path / "spool")
    pub.start()
    batch, rate_hz = 20, 20.0
    total = 3 * batch
    sent: list[Event] = []
    peak_depth = [0]
    batch_done = [threading.Event() for _ in range(3)]
    broker_down, broker_up = threading.Event(), threading.Event()

    def produce():
        # One batch before the outage, one while the broker is down, one after it is back, whatever the
        # broker's stop and start take on a loaded machine.
        for phase, gate in enumerate((None, broker_down, broker_up)):
            if gate is not None and not gate.wait(60):
                return
            for _ in range(batch):
                event = make_event(len(sent))
                sent.append(event)
                pub.publish_event(event)
                peak_depth[0] = max(peak_depth[0], pub.stats()["spool_depth"])
                time.sleep(1 / rate_hz)
            batch_done[phase].set()

    producer = threading.Thread(target=produce)
    try:
        producer.start()
        assert batch_done[0].wait(30)
        broker.stop()
        broker_down.set()
        assert batch_done[1].wait(30)
        broker.start()  # same port, same persistent store
        broker_up.set()
        producer.join(60)
        assert len(sent) == total
        assert sub.wait_for(lambda msgs: len({json.loads(m.payload)["seq"] for m in msgs}) >= total, 10)
        seqs = [json.loads(m.payload)["seq"] for m in sub.messages]
        unique = list(dict.fromkeys(seqs))
        assert unique == [e.seq for e in sent], "events missing or out of order"
        # At-least-once: only events in flight at the outage may come twice (paho resends them on reconnect).
        assert len(seqs) - len(unique) <= config(broker.port).max_inflight
        by_seq = {json.loads(m.payload)["seq"]: json.loads(m.payload) for m in sub.messages}
        assert all(by_seq[e.seq] == e.to_dict() for e in sent)  # original timestamps, byte-identical content
        stats = pub.stats()
        assert stats["reconnects"] >= 1 and stats["disconnects"] >= 1
        assert peak_depth[0] >= batch  # the whole middle batch really was spooled while the broker was down
        print(f"broker down during events {batch}..{2 * batch}; peak spool depth {peak_depth[0]}; "
              f"{len(seqs) - len(unique)} duplicate(s); reconnects {stats['reconnects']}")
    finally:
        pub.stop()
        sub.close()
        broker.stop()


def test_spooled_events_survive_a_killed_process_and_bound_drops_oldest(tmp_path):
    port = free_port()  # no broker yet: the child spools everything
    child, status = run_child(port, tmp_path / "spool", count=8, max_events=5)
    child.send_signal(signal.SIGKILL)
    child.wait(5)
    assert status == ["False", "5", "3"]  # offline, 5 kept, 3 oldest dropped and counted
    broker = Broker(tmp_path, port=port).start()
    sub = Subscriber(port, [f"{PREFIX}/face/event"])
    pub = MqttPublisher(config(port), "dev1", ["face"], tmp_path / "spool")
    try:
        pub.start()
        assert sub.wait_for(lambda msgs: len(msgs) >= 5, 5)
        time.sleep(0.3)
        bodies = [json.loads(m.payload) for m in sub.messages]
        assert [b["extra"]["i"] for b in bodies] == [3, 4, 5, 6, 7]
        for body in bodies:
            jsonschema.validate(body, EVENT_JSON_SCHEMA)
        assert pub.stats()["spool_depth"] == 0
    finally:
        pub.stop()
        sub.close()
        broker.stop()


def test_credentials_from_environment(tmp_path, monkeypatch):
    password_file = make_password_file(tmp_path / "passwd", "edge", "s3cret")
    broker = Broker(tmp_path, password_file=password_file).start()
    try:
        monkeypatch.setenv("EMOTION_EDGE_MQTT_USERNAME", "edge")
        monkeypatch.setenv("EMOTION_EDGE_MQTT_PASSWORD", "s3cret")
        sub = Subscriber(broker.port, [f"{PREFIX}/face/event"], username="edge", password="s3cret")
        pub = MqttPublisher(config(broker.port, username="ignored", password="ignored"), "dev1", ["face"],
                            tmp_path / "spool")
        pub.start()
        try:
            assert pub.is_connected()
            pub.publish_event(make_event(1))
            assert sub.wait_for(lambda msgs: len(msgs) == 1, 3)
        finally:
            pub.stop()
            sub.close()
    finally:
        broker.stop()


@pytest.mark.parametrize("protocol", ["auto", "3.1.1"])
def test_wrong_password_is_a_clear_error(tmp_path, monkeypatch, protocol):
    password_file = make_password_file(tmp_path / "passwd", "edge", "s3cret")
    broker = Broker(tmp_path, password_file=password_file).start()
    try:
        monkeypatch.setenv("EMOTION_EDGE_MQTT_USERNAME", "edge")
        monkeypatch.setenv("EMOTION_EDGE_MQTT_PASSWORD", "wrong")
        pub = MqttPublisher(config(broker.port, protocol=protocol), "dev1", ["face"], tmp_path / "spool")
        began = time.monotonic()
        with pytest.raises(EdgeError) as caught:
            pub.start()
        assert time.monotonic() - began < 2.0  # refused at the first CONNACK, not after a timeout
        message = str(caught.value)
        assert "refused the login" in message and "EMOTION_EDGE_MQTT_PASSWORD" in message, message
        assert not pub.is_connected()
        pub.stop()  # harmless after a failed start
    finally:
        broker.stop()


def test_falls_back_to_mqtt_311_when_broker_refuses_v5(broker, tmp_path):
    proxy = V311OnlyProxy(broker.port)
    sub = Subscriber(broker.port, [f"{PREFIX}/face/event"])
    pub = MqttPublisher(config(proxy.port, protocol="auto"), "dev1", ["face"], tmp_path / "spool")
    try:
        pub.publish_event(make_event(0))  # spooled before the first connection
        pub.start()
        assert pub.is_connected()
        stats = pub.stats()
        assert stats["protocol"] == "3.1.1" and proxy.refused_v5 >= 1 and proxy.relayed >= 1
        pub.publish_event(make_event(1))
        assert sub.wait_for(lambda msgs: len(msgs) == 2, 3)
        assert [json.loads(m.payload)["extra"]["i"] for m in sub.messages] == [0, 1]
    finally:
        pub.stop()
        sub.close()
    strict = MqttPublisher(config(proxy.port, protocol="5"), "dev1", ["face"], tmp_path / "spool2")
    with pytest.raises(EdgeError, match="mqtt.protocol"):
        strict.start()
    proxy.close()


def test_broker_down_at_start_is_not_fatal(tmp_path):
    port = free_port()
    pub = MqttPublisher(config(port, connect_timeout_s=5.0), "dev1", ["face"], tmp_path / "spool")
    began = time.monotonic()
    pub.start()
    assert time.monotonic() - began < 2.0  # returns after the first refused TCP attempt
    pub.publish_event(make_event(0))
    assert not pub.is_connected() and pub.stats()["spool_depth"] == 1
    broker = Broker(tmp_path, port=port).start()
    sub = Subscriber(port, [f"{PREFIX}/face/event"])
    try:
        assert sub.wait_for(lambda msgs: len(msgs) == 1, 5)
    finally:
        pub.stop()
        sub.close()
        broker.stop()


def test_config_validation_names_the_key(tmp_path):
    cases = [({"port": 0}, "mqtt.port"), ({"protocol": "4"}, "mqtt.protocol"), ({"qos": 3}, "mqtt.qos"),
             ({"topic_prefix": "a/#"}, "mqtt.topic_prefix"), ({"tls_ca_file": str(tmp_path / "no.pem")},
                                                              "mqtt.tls_ca_file"),
             ({"tls_cert_file": __file__}, "mqtt.tls_cert_file"), ({"spool_max_events": 0}, "mqtt.spool_max_events"),
             ({"reconnect_min_delay_s": 5.0, "reconnect_max_delay_s": 1.0}, "mqtt.reconnect_min_delay_s")]
    MqttConfig().validate()
    for overrides, key in cases:
        cfg = MqttConfig(**overrides)
        with pytest.raises(EdgeError, match=key.replace(".", r"\.")):
            cfg.validate()
    with pytest.raises(EdgeError, match="device id"):
        MqttPublisher(MqttConfig(), "a/b", ["face"], tmp_path)
    with pytest.raises(EdgeError, match="unknown modalities"):
        MqttPublisher(MqttConfig(), "dev1", ["smell"], tmp_path)


def test_cpu_temperature_reads_thermal_zones(tmp_path):
    assert cpu_temperature_c(tmp_path / "missing") is None
    for name, kind, milli in [("thermal_zone0", "acpitz", "41000"), ("thermal_zone1", "cpu-thermal", "52375"),
                              ("thermal_zone2", "gpu-thermal", "garbage")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "type").write_text(kind + "\n")
        (tmp_path / name / "temp").write_text(milli + "\n")
    assert cpu_temperature_c(tmp_path) == 52.4
    (tmp_path / "thermal_zone1" / "temp").write_text("")
    assert cpu_temperature_c(tmp_path) == 41.0


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a broker certificate for 127.0.0.1 and a client certificate (openssl CLI)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=emotion-edge test CA")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, extra in (("server", ["-extfile", "san.ext"]), ("client", [])):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
            f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", *extra)
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_mutual_tls(tmp_path):
    certs = make_certificates(tmp_path)
    broker = Broker(tmp_path, extra=f"cafile {certs['ca.pem']}\ncertfile {certs['server.pem']}\n"
                                    f"keyfile {certs['server.key']}\nrequire_certificate true\n").start()
    try:
        tls = {"tls_ca_file": str(certs["ca.pem"]), "tls_cert_file": str(certs["client.pem"]),
               "tls_key_file": str(certs["client.key"])}
        pub = MqttPublisher(config(broker.port, **tls), "dev1", ["face"], tmp_path / "spool")
        pub.start()
        try:
            assert pub.is_connected()
            pub.publish_event(make_event(0))
            deadline = time.monotonic() + 3
            while pub.stats()["events_acked"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert pub.stats()["events_acked"] == 1  # the broker's PUBACK came back over TLS
        finally:
            pub.stop()
        # Without a client certificate the broker refuses the TLS handshake: no connection, events stay spooled.
        bare = MqttPublisher(config(broker.port, tls_ca_file=str(certs["ca.pem"]), connect_timeout_s=1.0),
                             "dev1", ["face"], tmp_path / "spool2")
        bare.start()
        try:
            bare.publish_event(make_event(1))
            assert not bare.is_connected() and bare.stats()["spool_depth"] == 1
        finally:
            bare.stop()
    finally:
        broker.stop()


def test_clean_stop_logs_no_error(broker, tmp_path, caplog):
    """A normal shutdown is not an error: paho's own 'Client is not connected' after disconnect() stays quiet."""
    caplog.set_level(logging.DEBUG, logger="edge.publish")
    pub = MqttPublisher(config(broker.port), "dev1", ["face"], tmp_path / "spool")
    pub.start()
    assert pub.is_connected()
    pub.publish_event(make_event(0, "face"))
    pub.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == []
    assert any("Sending DISCONNECT" in r.getMessage() for r in caplog.records)  # paho's log was really captured


def test_publish_events_delivers_batches_in_order(broker, tmp_path):
    sub = Subscriber(broker.port, [f"{PREFIX}/+/event"])
    pub = MqttPublisher(config(broker.port), "dev1", ["face", "voice"], tmp_path / "spool")
    pub.start()
    try:
        events = [make_event(i, "face" if i % 3 else "voice") for i in range(600)]
        for start in range(0, len(events), 40):
            assert pub.publish_events(events[start:start + 40]) == len(events[start:start + 40])
        assert pub.publish_events([]) == 0
        assert sub.wait_for(lambda msgs: len(msgs) >= len(events), 20), len(sub.messages)
        assert [json.loads(m.payload)["id"] for m in sub.messages] == [e.id for e in events]
        assert [m.topic for m in sub.messages] == [f"{PREFIX}/{e.modality}/event" for e in events]
        assert wait_acked(pub, len(events))
        stats = pub.stats()
        assert stats["events_spooled"] == len(events) and stats["spool_depth"] == 0 and stats["spool_dropped"] == 0
    finally:
        pub.stop()
        sub.close()


def wait_acked(pub: MqttPublisher, count: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while pub.stats()["events_acked"] < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return pub.stats()["events_acked"] >= count


def test_overload_drops_thousands_in_a_handful_of_lines_with_exact_counts(tmp_path, caplog):
    """Broker down, a 100-event spool, thousands of events (batches and single ones), oversize events, and events
    after stop(): every drop is counted exactly, and the log has a few lines, not one per event."""
    caplog.set_level(logging.INFO, logger="edge.publish")
    pub = MqttPublisher(config(free_port(), spool_max_events=100, spool_max_bytes=64 * 1024, connect_timeout_s=0.5),
                        "dev1", ["face"], tmp_path / "spool")
    pub.start()
    huge = make_event(0)
    huge.extra = {"blob": "x" * 70_000}
    for start in range(0, 4000, 50):
        pub.publish_events([make_event(start + i) for i in range(50)])
    for i in range(1000):
        pub.publish_event(make_event(i))
    for _ in range(300):
        pub.publish_events([huge, make_event(1)])
    stats = pub.stats()
    assert stats["spool_depth"] == 100 and stats["events_spooled"] == 5300
    assert stats["spool_drops"] == {"bound": 5200, "too_large": 300} and stats["spool_dropped"] == 5500
    pub.stop()
    for start in range(0, 2000, 100):
        pub.publish_events([make_event(start + i) for i in range(100)])
    pub.publish_event(make_event(0))
    assert pub.stats()["events_dropped_stopped"] == 2001
    drops = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
             and any(word in r.getMessage() for word in ("dropp", "not spooled", "larger than"))]
    assert len(drops) <= 5, drops  # spool full, too large: first + summary each; stopped: first only
    assert any("(5200 so far)" in line for line in drops) and any("(300 such event(s) so far)" in line
                                                                    for line in drops)
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 10
