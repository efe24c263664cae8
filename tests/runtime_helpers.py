"""Running `emotion-edge run` as a subprocess against a real broker, as a device would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
    """The runtime with stdout and stderr going to files, so a long run can never block on a full pipe."""
    number = len(list(tmp_path.glob('config-*.toml')))
    path = tmp_path / f"config-{number}.toml"
    path.write_text(toml_text(config))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out_path, err_path = tmp_path / f"runtime-{number}.out", tmp_path / f"runtime-{number}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(path), "--print-events",
                                    *args], stdout=out, stderr=err, text=True, cwd=ROOT, env=env)
    process.output_paths = (out_path, err_path)
    return process


def output(process: subprocess.Popen) -> tuple[str, str]:
    """What the runtime has printed so far: stdout, stderr."""
    out_path, err_path = process.output_paths
    return out_path.read_text(errors="replace"), err_path.read_text(errors="replace")


def kill(process: subprocess.Popen) -> None:
    """Kill and reap a runtime that is still running (a failed test must not leave it behind)."""
    if process.poll() is None:
        process.kill()
        process.wait()


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    """Wait for the runtime to exit and return its stdout and stderr; one still running at `timeout` is killed."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(process)
        raise AssertionError(f"the runtime was still running after {timeout} s:\n{output(process)[1][-3000:]}")
    return output(process)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def printed_events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{\"device_id\"")]


def wait_for(predicate, timeout: float = 5.0) -> bool:
    """Poll `predicate` until it is true or `timeout` passes; its last answer counts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
