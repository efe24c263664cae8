"""Running `emotion-edge run` as a subprocess against a real broker, as a device would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT


def toml_text(config: dict) -> str:
    lines = []
    for section, table in config.items():
        lines.append(f"[{section}]")
        for key, value in table.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, str):
                text = json.dumps(value)
            else:
                text = repr(value)
            lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def runtime_config(tmp_path: Path, models: Path, video: Path, port: int, **overrides) -> dict:
    config = {
        "device": {"id": "testdev", "data_dir": str(tmp_path / "data"), "health_interval_s": 0.5},
        "camera": {"source": str(video), "on_end": "stop", "realtime": False},
        "face": {"models": str(models)},
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_delay_s": 0.2, "reconnect_max_delay_s": 1.0,
                 "connect_timeout_s": 2.0},
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    return config


def start_runtime(tmp_path: Path, config: dict, *args: str) -> subprocess.Popen:
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.toml')))}.toml"
    path.write_text(toml_text(config))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(path), "--print-events", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def printed_events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{\"device_id\"")]
