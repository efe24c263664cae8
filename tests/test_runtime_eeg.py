"""EEG through the whole runtime: a simulated Muse over real LSL -> `emotion-edge run` -> real mosquitto."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager

import jsonschema

from edge.eeg.simulator import SimulatorConfig, run_simulator
from edge.events import EVENT_JSON_SCHEMA
from tests.mqtt_broker import Subscriber, broker_fixture  # noqa: F401

from .conftest import ROOT
from .runtime_helpers import finish, output, run_cli, start_runtime, toml_text

PREFIX = "emotion_edge/eegdev"


def eeg_config(tmp_path, port: int, source_id: str, **lsl) -> dict:
    return {
        "device": {"id": "eegdev", "data_dir": str(tmp_path / "data"), "health_interval_s": 0.5},
        "face": {"enabled": False},
        "eeg": {"enabled": True, "event_interval_s": 1.0, "warmup_s": 5.0},
        "lsl": {"source_id": source_id, "resolve_timeout_s": 1.0, **lsl},
        "mqtt": {"host": "127.0.0.1", "port": port, "connect_timeout_s": 2.0},
    }


@contextmanager
def simulated_muse():
    """A simulated Muse on LSL under a fresh source id (yielded), stopped and joined on exit."""
    source_id = f"sim-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    simulator = threading.Thread(target=run_simulator, kwargs={
        "config": SimulatorConfig(source_id=source_id, name=source_id), "stop": stop}, daemon=True)
    simulator.start()
    try:
        yield source_id
    finally:
        stop.set()
        simulator.join(timeout=10)


def test_simulated_muse_reaches_the_hub_as_eeg_events(broker, tmp_path):
    with simulated_muse() as source_id:
        subscriber = Subscriber(broker.port, [f"{PREFIX}/#"])
        process = start_runtime(tmp_path, eeg_config(tmp_path, broker.port, source_id))
        try:
            assert subscriber.wait_for(lambda msgs: len([m for m in msgs if m.topic.endswith("eeg/event")]) >= 3,
                                       timeout=60), output(process)[1][-3000:]
            assert subscriber.wait_for(lambda msgs: any(m.topic.endswith("/health") and "eeg" in json.loads(m.payload)
                                                        for m in msgs), timeout=10)
        finally:
            process.send_signal(signal.SIGTERM)
            finish(process, 30)
    events = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/eeg/event")]
    for event in events:
        jsonschema.validate(event, EVENT_JSON_SCHEMA)
        assert event["modality"] == "eeg" and event["model"]["estimator"] == "index" and event["label"] is None
        assert set(event["extra"]["electrodes"]) == {"TP9", "AF7", "AF8", "TP10"}
    states = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/eeg/state")]
    assert len(states) > len(events), "state updates every window, events every event_interval_s"
    health = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/health") if "eeg" in json.loads(m.payload)]
    assert health[-1]["eeg"]["windows"] > 0 and health[-1]["eeg"]["quality"]["AF7"]["status"]
    subscriber.close()


def test_wrong_channel_count_is_a_clear_runtime_error(broker, tmp_path):
    with simulated_muse() as source_id:
        path = tmp_path / "eeg.toml"
        path.write_text(toml_text(eeg_config(tmp_path, broker.port, source_id, channel_count=8)))
        result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(path), "--duration", "30"],
                                capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "channel" in result.stderr and "emotion-edge: error:" in result.stderr


def test_eeg_commands_are_reachable_from_the_cli():
    assert "--asymmetry" in run_cli("simulate-muse", "--help").stdout
    assert "--out" in run_cli("record", "--help").stdout
