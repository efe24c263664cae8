"""MQTT faults are visible: TLS, login and ACL failures named once, bad TLS files fatal at startup, refused
events kept in dead_letter, jittered reconnects capped at 10 s, retained liveness that expires (real mosquitto)."""

from __future__ import annotations

import json
from datetime import datetime
import logging
import random
import sqlite3
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from tests.mqtt_broker import Broker, Subscriber, free_port, make_password_file
from tests.runtime_helpers import finish, runtime_config, start_runtime, wait_for
from tests.test_publish_mqtt import config as publisher_config
from tests.test_publish_mqtt import make_event
from tests.videos import pan_frames, write_mjpg

from edge.publish import MqttConfig, MqttPublisher
from edge.backoff import Backoff
from edge.logsummary import Repeats
from edge.publish.spool import SPOOL_FILENAME

PREFIX = "emotion_edge/dev1"


def config(port: int, **overrides) -> MqttConfig:
    """The publisher tests' config with faster retries, so several failures fit in a test."""
    return publisher_config(port, **{"reconnect_max_delay_s": 0.5, "connect_timeout_s": 2.0,
                                     "drain_timeout_s": 2.0, **overrides})


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.pem", "-days", "2", "-subj", f"/CN={name}")
    return directory / f"{name}.pem"


def make_cert(directory: Path, ca: str, name: str, san: str = "") -> tuple[Path, Path]:
    """A certificate signed by the CA `ca` (made by make_ca in the same directory), with an optional SAN."""
    extra = []
    if san:
        (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    openssl(directory, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
    openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *extra)
    return directory / f"{name}.pem", directory / f"{name}.key"


def retained(port: int, topic: str, wait: float = 1.0) -> list:
    sub = Subscriber(port, [topic])
    try:
        sub.wait_for(lambda msgs: any(m.topic == topic for m in msgs), wait)
        return [m for m in sub.on(topic) if m.retain]
    finally:
        sub.close()


@pytest.mark.parametrize("fault", ["wrong_ca", "hostname_mismatch", "no_client_certificate"])
def test_tls_failure_is_named_once_and_never_falls_back_to_plaintext(tmp_path, caplog, fault):
    """The broker's TLS listener is the first one; a second, plaintext listener lets a subscriber watch."""
    make_ca(tmp_path, "ca")
    other_ca = make_ca(tmp_path, "other_ca")
    server_cert, server_key = make_cert(tmp_path, "ca", "server",
                                        "DNS:broker.example" if fault == "hostname_mismatch" else "IP:127.0.0.1")
    client_cert, client_key = make_cert(tmp_path, "ca", "client")
    plain_port = free_port()
    broker = Broker(tmp_path, extra=f"cafile {tmp_path / 'ca.pem'}\ncertfile {server_cert}\nkeyfile {server_key}\n"
                                    f"require_certificate {'true' if fault == 'no_client_certificate' else 'false'}\n"
                                    f"listener {plain_port} 127.0.0.1\n").start()
    watcher = Subscriber(plain_port, ["#"])
    tls = {"tls_ca_file": str(other_ca if fault == "wrong_ca" else tmp_path / "ca.pem")}
    caplog.set_level(logging.DEBUG, logger="edge.publish")
    pub = MqttPublisher(config(broker.port, connect_timeout_s=1.0, **tls), "dev1", ["face"], tmp_path / "spool")
    try:
        pub.start()
        pub.publish_event(make_event(0))
        assert wait_for(lambda: len(pub.stats()["reconnect_delays_s"]) >= 4, 10), pub.stats()
        stats = pub.stats()
        assert not stats["connected"] and stats["state"] == "tls_failed", stats
        assert pub.publish_health({})["mqtt"]["state"] == "tls_failed"
        assert stats["last_error"].startswith("TLS: ") and "mqtt.tls_" in stats["last_error"]
        if fault != "no_client_certificate":
            assert "certificate verify failed" in stats["last_error"] and "mqtt.host" in stats["last_error"]
        named = [r for r in caplog.records if "TLS: " in r.getMessage() and r.name == "edge.publish.mqtt"]
        assert len(named) == 1, [r.getMessage() for r in named]  # once per state change, not per retry
        assert named[0].levelno == logging.WARNING
        assert stats["spool_depth"] == 1 and stats["events_acked"] == 0
        time.sleep(0.3)
        assert watcher.messages == []  # nothing delivered
        # The client spoke TLS and nothing else: a plaintext CONNECT on the TLS listener makes mosquitto log
        # "wrong version number", and no session of the device's client id was ever opened.
        assert "SSL routines" in broker.log() and "wrong version number" not in broker.log()
        assert "emotion-edge-dev1" not in broker.log()
        print(f"{fault}: {stats['last_error']} ({len(stats['reconnect_delays_s'])} retries, one log line)")
    finally:
        pub.stop()
        watcher.close()
        broker.stop()


@pytest.mark.parametrize("case", ["ca_missing", "ca_not_pem", "key_does_not_match_cert", "insecure_without_tls"])
def test_bad_tls_configuration_exits_2_with_one_line(tmp_path, case):
    make_ca(tmp_path, "ca")
    cert, _ = make_cert(tmp_path, "ca", "client")
    _, other_key = make_cert(tmp_path, "ca", "other")
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    mqtt, key = {
        "ca_missing": ({"tls_ca_file": str(tmp_path / "missing.pem")}, "mqtt.tls_ca_file"),
        "ca_not_pem": ({"tls_ca_file": str(tmp_path / "notes.txt")}, "mqtt.tls_ca_file"),
        "key_does_not_match_cert": ({"tls_ca_file": str(tmp_path / "ca.pem"), "tls_cert_file": str(cert),
                                     "tls_key_file": str(other_key)}, "mqtt.tls_key_file"),
        "insecure_without_tls": ({"tls_insecure": True}, "mqtt.tls_insecure"),
    }[case]
    settings = runtime_config(tmp_path, tmp_path / "models", tmp_path / "clip.mp4", free_port(), mqtt=mqtt)
    process = start_runtime(tmp_path, settings)
    out, err = finish(process, timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 2, err
    assert len(lines) == 1 and lines[0].startswith("emotion-edge: error: " + key), err
    print(lines[0])


def test_wrong_password_at_first_connect_exits_2(tmp_path, face_models):
    password_file = make_password_file(tmp_path / "passwd", "edge", "s3cret")
    broker = Broker(tmp_path, password_file=password_file).start()
    try:
        video = write_mjpg(str(tmp_path / "clip.avi"), pan_frames(5), 10.0)
        settings = runtime_config(tmp_path, face_models, video, broker.port,
                                  mqtt={"username": "edge", "password": "wrong"})
        process = start_runtime(tmp_path, settings)
        out, err = finish(process, timeout=120)
        assert process.returncode == 2, err
        named = [line for line in err.splitlines() if "refused the login" in line]
        assert len(named) == 1, err
        assert named[0].startswith("emotion-edge: error: MQTT broker") and "mqtt.password" in named[0]
        assert "Traceback" not in err
    finally:
        broker.stop()


def test_login_refused_after_start_is_named_once_and_not_fatal(tmp_path, caplog):
    """The broker comes back with a changed password file while the device runs: state auth_failed, one log
    line over several refused attempts, events stay spooled; the device keeps running (it may be fixed remotely)."""
    password_file = make_password_file(tmp_path / "passwd", "edge", "s3cret")
    broker = Broker(tmp_path, password_file=password_file).start()
    caplog.set_level(logging.INFO, logger="edge.publish")
    pub = MqttPublisher(config(broker.port, username="edge", password="s3cret"), "dev1", ["face"], tmp_path / "spool")
    try:
        pub.start()
        assert pub.is_connected()
        broker.stop()
        make_password_file(password_file, "edge", "rotated")
        broker.start()
        pub.publish_event(make_event(0))
        assert wait_for(lambda: pub.stats()["state"] == "auth_failed", 10), pub.stats()
        refusals = pub.stats()["connect_failures"]
        assert wait_for(lambda: pub.stats()["connect_failures"] >= refusals + 3, 10)  # still retrying
        named = [r for r in caplog.records if "refused the login" in r.getMessage()]
        assert len(named) == 1 and named[0].levelno == logging.WARNING, [r.getMessage() for r in named]
        assert "mqtt.password" in pub.stats()["last_error"] and pub.stats()["spool_depth"] == 1
    finally:
        pub.stop()
        broker.stop()


def acl_broker(tmp_path: Path) -> Broker:
    """Password file users `edge` (the device: availability, state and health only) and `watch` (reads all)."""
    password_file = make_password_file(tmp_path / "passwd", "edge", "s3cret")
    subprocess.run(["mosquitto_passwd", "-b", str(password_file), "watch", "w4tch"], check=True, capture_output=True)
    acl = tmp_path / "acl"
    acl.write_text(f"user edge\ntopic write {PREFIX}/availability\ntopic write {PREFIX}/+/state\n"
                   f"topic write {PREFIX}/health\n\nuser watch\ntopic read #\n")
    return Broker(tmp_path, password_file=password_file, extra=f"acl_file {acl}\n").start()


def test_acl_refused_events_are_kept_in_dead_letter_with_reason(tmp_path, caplog):
    broker = acl_broker(tmp_path)
    watcher = Subscriber(broker.port, [f"{PREFIX}/#"], username="watch", password="w4tch")
    caplog.set_level(logging.INFO, logger="edge.publish")
    pub = MqttPublisher(config(broker.port, username="edge", password="s3cret", protocol="5"), "dev1", ["face"],
                        tmp_path / "spool")
    events = [make_event(i) for i in range(6)]
    try:
        pub.start()
        assert pub.is_connected()
        for event in events:
            pub.publish_event(event)
        assert wait_for(lambda: pub.stats()["events_rejected"] == len(events), 5), pub.stats()
        stats = pub.stats()
        assert stats["spool_depth"] == 0 and stats["dead_letters"] == len(events) and stats["events_acked"] == 0
        assert pub.publish_health({})["dead_letters"] == len(events)
        assert "0x87" in stats["last_error"]
        refused = [r.getMessage() for r in caplog.records if "refused events on" in r.getMessage()]
        assert len(refused) == 1 and f"{PREFIX}/face/event" in refused[0] and "ACL" in refused[0], refused
        assert watcher.wait_for(lambda msgs: any(m.topic.endswith("/availability") for m in msgs), 3)
        assert not [m for m in watcher.messages if m.topic.endswith("/event")]
    finally:
        pub.stop()
        watcher.close()
        broker.stop()
    with sqlite3.connect(tmp_path / "spool" / SPOOL_FILENAME) as db:
        rows = db.execute("SELECT topic, payload, qos, reason FROM dead_letter ORDER BY id").fetchall()
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
    assert [json.loads(row[1]) for row in rows] == [e.to_dict() for e in events]  # nothing lost, in order
    assert {(row[0], row[2]) for row in rows} == {(f"{PREFIX}/face/event", 1)}
    assert all("Not authorized" in row[3] and "0x87" in row[3] for row in rows), rows


def test_acl_denial_is_invisible_on_mqtt_311(tmp_path):
    """The documented limit: a 3.1.1 broker acknowledges a publish its ACL drops, so it counts as delivered."""
    broker = acl_broker(tmp_path)
    pub = MqttPublisher(config(broker.port, username="edge", password="s3cret", protocol="3.1.1"), "dev1",
                        ["face"], tmp_path / "spool")
    try:
        pub.start()
        pub.publish_event(make_event(0))
        assert wait_for(lambda: pub.stats()["events_acked"] == 1, 5)
        assert pub.stats()["dead_letters"] == 0
        assert "Denied PUBLISH" in broker.log()
    finally:
        pub.stop()
        broker.stop()


def test_backoff_is_jittered_and_capped_at_10_s():
    assert MqttConfig().reconnect_max_delay_s == 10.0
    backoff = Backoff(1.0, 10.0, random.Random(7))
    first = [backoff.next() for _ in range(4)]
    assert first[0] == 1.0 and all(1.0 <= d <= 2 ** i for i, d in enumerate(first))
    late = [backoff.next() for _ in range(2000)]
    assert 1.0 <= min(late) and max(late) <= 10.0
    assert statistics.pstdev(late) > 2.0  # spread over the whole range (full jitter), not a fixed cap
    backoff.reset()
    assert backoff.next() == 1.0


def test_short_outage_reconnects_within_the_cap_quietly_and_republishes_online(tmp_path, caplog):
    """Default backoff (1 s floor, 10 s cap): broker down 3 s, then back with an empty retained store."""
    caplog.set_level(logging.DEBUG, logger="edge.publish")
    broker = Broker(tmp_path).start()
    cfg = config(broker.port)
    cfg.reconnect_min_delay_s, cfg.reconnect_max_delay_s = MqttConfig().reconnect_min_delay_s, 10.0
    pub = MqttPublisher(cfg, "dev1", ["face"], tmp_path / "spool")
    try:
        pub.start()
        assert pub.is_connected()
        broker.stop()
        assert wait_for(lambda: not pub.is_connected(), 5)
        time.sleep(3.0)
        assert pub.stats()["state"] == "unreachable"
        broker.start()
        up = time.monotonic()
        assert wait_for(pub.is_connected, 12.0), pub.stats()
        took = time.monotonic() - up
        assert took <= 10.5, f"reconnected {took:.1f} s after the broker came back"
        delays = pub.stats()["reconnect_delays_s"]
        assert delays and all(1.0 <= d <= 10.0 for d in delays), delays
        assert delays[1:] != [2.0, 4.0, 8.0][:len(delays) - 1], delays  # jittered, not paho's doubling
        assert [m.payload for m in retained(broker.port, f"{PREFIX}/availability")] == [b"online"]
        paho_errors = [r.getMessage() for r in caplog.records
                       if r.name.endswith(".paho") and r.levelno >= logging.ERROR]
        assert paho_errors == []
        assert any(r.getMessage().startswith("Client is not connected") for r in caplog.records)  # demoted
        changes = [r.getMessage() for r in caplog.records if r.name == "edge.publish.mqtt"
                   and r.levelno == logging.WARNING and "unreachable" in r.getMessage()]
        assert len(changes) == 1, changes
        print(f"broker back: reconnected after {took:.2f} s; delays {delays}")
    finally:
        pub.stop()
        broker.stop()


def test_retained_availability_expires_when_the_device_is_gone(tmp_path):
    """The broker dies (power loss: no will sent, its autosave holds the retained `online`), the device goes off
    meanwhile, the broker comes back from persistence: MQTT 5 message expiry removes the stale `online` and state,
    so a hub that subscribes afterwards does not see a live device; the retained health keeps an old `timestamp`."""
    broker = Broker(tmp_path, persistence=True, extra="autosave_interval 1\n").start()
    pub = MqttPublisher(config(broker.port, retained_expiry_s=3, protocol="5"), "dev1", ["face"],
                        tmp_path / "spool")
    try:
        pub.start()
        pub.publish_state("face", {"label": "happy"})
        assert "timestamp" in pub.publish_health({"fps": 1.0})
        time.sleep(3.5)  # past the expiry interval: the device refreshed them meanwhile
        alive = {m.topic: m.payload for m in retained(broker.port, f"{PREFIX}/availability")
                 + retained(broker.port, f"{PREFIX}/face/state")}
        assert alive == {f"{PREFIX}/availability": b"online", f"{PREFIX}/face/state": b'{"label":"happy"}'}
        pub.publish_health({"fps": 1.0})  # the runtime publishes health every device.health_interval_s
        time.sleep(1.5)  # an autosave after the last refresh
        broker.process.kill()
        broker.process.wait()
        broker.process = None
        assert wait_for(lambda: not pub.is_connected(), 5)
    finally:
        pub.stop()  # the device goes off while the broker is down: it cannot publish offline
    broker.start()
    try:
        restored = "emotion_edge" in (tmp_path / "mosquitto.db").read_bytes().decode("latin-1")
        assert restored, "the broker's persistence file holds no retained message of the device"
        time.sleep(3.5)  # longer than the expiry interval after the last refresh
        sub = Subscriber(broker.port, [f"{PREFIX}/#"])
        time.sleep(0.5)
        sub.close()
        assert [(m.topic, m.payload) for m in sub.messages if m.retain and not m.topic.endswith("/health")] == []
        last_seen = json.loads(next(m.payload for m in sub.messages if m.topic == f"{PREFIX}/health"))
        age = time.time() - datetime.fromisoformat(last_seen["timestamp"].replace("Z", "+00:00")).timestamp()
        assert age > 3.0  # the heartbeat that is left is older than the expiry: the device is gone
    finally:
        broker.stop()


def test_repeats_are_summarised_per_interval(caplog):
    caplog.set_level(logging.INFO, logger="test.repeats")
    repeats = Repeats(logging.getLogger("test.repeats"), interval_s=0.2)
    for _ in range(5):
        repeats.note(("connection", "x"), logging.WARNING, "broker down")
    time.sleep(0.25)
    repeats.note(("connection", "x"), logging.WARNING, "broker down")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["broker down", "broker down (5 more time(s) in the last 0 s)"], lines


def test_acl_refusing_everything_cannot_grow_the_spool_without_limit(tmp_path, caplog):
    """Every event refused (MQTT 5, 0x87): dead letters count in the spool's bounds, the oldest are purged first,
    counted in spool_drops and named in a couple of lines, and the spool file stays bounded."""
    broker = acl_broker(tmp_path)
    caplog.set_level(logging.INFO, logger="edge.publish")
    pub = MqttPublisher(config(broker.port, username="edge", password="s3cret", protocol="5", spool_max_events=50),
                        "dev1", ["face"], tmp_path / "spool")
    total = 1500
    try:
        pub.start()
        for start in range(0, total, 25):
            pub.publish_events([make_event(start + i) for i in range(25)])
            assert wait_for(lambda: pub.stats()["spool_depth"] == 0, 10)  # refused before the next batch comes
        assert wait_for(lambda: pub.stats()["events_rejected"] == total, 30), pub.stats()
        stats = pub.stats()
        kept = stats["dead_letters"]
        assert kept <= 50 and stats["spool_depth"] == 0 and stats["events_acked"] == 0
        assert stats["spool_drops"] == {"dead_letter_bound": total - kept} and stats["spool_dropped"] == total - kept
    finally:
        pub.stop()
        broker.stop()
    with sqlite3.connect(tmp_path / "spool" / SPOOL_FILENAME) as db:
        ids = [json.loads(row[0])["extra"]["i"] for row in db.execute("SELECT payload FROM dead_letter ORDER BY id")]
    assert ids == list(range(total - kept, total))  # the newest refused events are the ones kept
    assert sum(p.stat().st_size for p in (tmp_path / "spool").glob(SPOOL_FILENAME + "*")) < 600 * 1024
    purged = [r.getMessage() for r in caplog.records if "dead letters" in r.getMessage()]
    refused = [r.getMessage() for r in caplog.records if "refused events on" in r.getMessage()]
    assert 1 <= len(purged) <= 2 and 1 <= len(refused) <= 2, (purged, refused)
