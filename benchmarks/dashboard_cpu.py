"""What the dashboard costs the device: CPU of the sink while a page watches, and the page's weight (issue 19).

Goal: < 2% of one core at the default update rate (dashboard.update_interval_s = 1.0) with observations at a
realistic rate: face 5/s, voice 1/s, EEG 4/s, fused 4/s, an event every 5 s and a health report every 10 s
(device.health_interval_s). The timeline is filled with history_s (300 s) of observations before the measurement,
so every push carries a full timeline, as on a kiosk that has been up for minutes.

One process holds the bus, the sink and a publisher thread. The sink's CPU is this process's CPU time
(time.process_time) minus the publisher thread's own (time.thread_time), over >= 30 s per client:
- none: no page open (the sink only keeps its state);
- sse: a stdlib Server-Sent Events reader in another process;
- chromium: the real page in headless Chromium (tests/browser.py); Chromium's own CPU (its process tree,
  psutil) is reported beside it for information: it is the browser's cost, not the sink's.
Per-thread CPU comes from /proc/self/task/<tid>/stat (clock ticks).

Usage: python benchmarks/dashboard_cpu.py [--seconds 30] [--clients none,sse,chromium]
Prints a table and writes benchmarks/results/dashboard_cpu.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bus import Bus, HealthReport  # noqa: E402
from edge.events import Event, utc_timestamp  # noqa: E402
from edge.observation import Observation  # noqa: E402
from edge.sinks.dashboard import ASSETS, DashboardConfig, DashboardSink  # noqa: E402

RATES = {"face": 5.0, "voice": 1.0, "eeg": 4.0, "fused": 4.0}  # observations per second
SUBJECTS = {"face": "face-1", "voice": "room", "eeg": "wearer", "fused": "room"}
TICK = os.sysconf("SC_CLK_TCK")
HEALTH = {
    "face": {"fps": 15.0, "frames": 0, "dropped_frames": 0, "camera_state": "running", "tracks": 1,
             "stages": {"total": {"median_ms": 20.0, "p95_ms": 31.0}, "detect": {"median_ms": 6.0, "p95_ms": 9.0}}},
    "voice": {"windows_per_s": 1.0, "source_state": "running", "dropped": 0, "noise_floor_dbfs": -52.0},
    "eeg": {"source": {"state": "connected", "effective_rate_hz": 256.0}, "warming_up": False, "warmup_progress": 1.0,
            "quality": {ch: {"status": "ok", "score": 0.9, "std_uv": 12.0} for ch in ("TP9", "AF7", "AF8", "TP10")}},
    "spool_depth": 0, "cpu_temp_c": 48.3, "mqtt": {"connected": True, "state": "connected", "reconnects": 0},
}


def observation(modality: str, step: int, when: float) -> Observation:
    phase = step % 50 / 50
    return Observation(modality, SUBJECTS[modality], when, label="happy" if phase > 0.5 else "neutral",
                       probabilities={"happy": phase, "neutral": 1 - phase}, valence=round(phase - 0.5, 3),
                       arousal=round(0.25 - phase / 2, 3), confidence=0.7, quality=0.8,
                       estimator="fusion" if modality == "fused" else "classifier",
                       extra={"contributions": {"face": 0.6, "voice": 0.4}} if modality == "fused" else {})


def event(modality: str) -> Event:
    return Event(device_id="bench", modality=modality if modality != "fused" else "face", kind="emotion",
                 track_id=SUBJECTS[modality], label="happy", confidence=0.7, probabilities={"happy": 0.7},
                 valence=0.4, arousal=0.2, timestamp=utc_timestamp(),
                 model={"id": "m", "sha256": "", "estimator": "classifier"}, latency_ms=10.0)


def prefill(sink: DashboardSink, seconds: float) -> None:
    """history_s of observations in the past, straight into the state: a full timeline from the first push."""
    now, seen = time.time(), time.monotonic()
    for modality, rate in RATES.items():
        for step in range(int(seconds * rate)):
            when = now - seconds + step / rate
            sink.state.add(observation(modality, step, when), when, seen)


class Publisher(threading.Thread):
    def __init__(self, bus: Bus, seconds: float):
        super().__init__(name="publisher", daemon=True)
        self.bus, self.seconds, self.cpu, self.published = bus, seconds, 0.0, 0

    def run(self) -> None:
        start = time.monotonic()
        schedule = [(1 / rate, modality) for modality, rate in RATES.items()]
        due = {modality: start for _, modality in schedule}
        steps = dict.fromkeys(RATES, 0)
        next_event, next_health = start + 5, start
        cpu = time.thread_time()
        while (now := time.monotonic()) - start < self.seconds:
            for period, modality in schedule:
                if now >= due[modality]:
                    self.bus.publish(observation(modality, steps[modality], time.time()))
                    steps[modality] += 1
                    due[modality] += period
                    self.published += 1
            if now >= next_event:
                self.bus.publish(event("face"))
                next_event += 5
            if now >= next_health:
                self.bus.publish(HealthReport(time.time(), HEALTH))
                next_health += 10
            time.sleep(max(0.0, min(due.values()) - time.monotonic()))
        self.cpu = time.thread_time() - cpu


def thread_ticks() -> dict[int, int]:
    ticks = {}
    for task in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[int(task)] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def thread_group(thread: threading.Thread) -> str:
    if thread.name in ("bus-dashboard", "dashboard-http", "dashboard-push", "publisher", "MainThread"):
        return thread.name
    return "http handlers (SSE)" if "process_request" in thread.name else "other"


SSE_CLIENT = textwrap.dedent("""
    import json, socket, sys, time
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /api/events HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
        s.settimeout(1.0)
        data, start = b"", time.monotonic()
        while time.monotonic() - start < seconds:
            try:
                chunk = s.recv(1 << 16)
            except TimeoutError:
                continue
            if not chunk:
                break
            data += chunk
    print(json.dumps({"bytes": len(data), "snapshots": data.count(b"\\ndata: ") + data.count(b"\\r\\n\\r\\ndata: ")}))
""")


def browser_tree_cpu(process) -> float:
    import psutil

    total = 0.0
    try:
        root = psutil.Process(process.pid)
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    except psutil.Error:
        pass
    return total


def measure(client: str, seconds: float) -> dict:
    sink = DashboardSink(DashboardConfig(enabled=True, port=0), device_id="bench")
    bus = Bus()
    bus.subscribe(sink.name, sink.handle, sink.accepts, sink.queue_size)
    prefill(sink, sink.config.history_s)
    sink.start()
    bus.start()
    browser = page = helper = None
    if client == "chromium":
        from tests.browser import Browser

        browser = Browser(Path(tempfile.mkdtemp(prefix="dashboard-bench-")), width=1280, height=800)
        page = browser.open(sink.url)
        page.wait_for("document.querySelector('#status').dataset.state === 'live'")
    elif client == "sse":
        helper = subprocess.Popen([sys.executable, "-c", SSE_CLIENT, str(sink.port), str(seconds + 2)],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
    time.sleep(1.0)  # the first snapshot (at connect) is not part of the steady state
    publisher = Publisher(bus, seconds)
    pushes0 = sink.health()["pushes"]
    browser0 = browser_tree_cpu(browser.process) if browser else None
    ticks0, wall0, cpu0 = thread_ticks(), time.monotonic(), time.process_time()
    publisher.start()
    publisher.join()
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    ticks1 = thread_ticks()
    groups: dict[str, float] = {}
    for thread in threading.enumerate() + [publisher]:
        if thread.native_id in ticks1:
            delta = (ticks1[thread.native_id] - ticks0.get(thread.native_id, 0)) / TICK
            groups[thread_group(thread)] = groups.get(thread_group(thread), 0.0) + delta
    result = {
        "client": client, "wall_s": round(wall, 2), "process_cpu_s": round(cpu, 3),
        "publisher_cpu_s": round(publisher.cpu, 3), "sink_cpu_s": round(cpu - publisher.cpu, 3),
        "sink_pct_of_core": round(100 * (cpu - publisher.cpu) / wall, 3),
        "threads_cpu_s": {name: round(value, 2) for name, value in sorted(groups.items())},
        "observations": publisher.published, "pushes": sink.health()["pushes"] - pushes0,
        "snapshot_bytes": len(sink.snapshot_json()),
        "browser_pct_of_core": None,
    }
    if browser is not None:
        result["browser_pct_of_core"] = round(100 * (browser_tree_cpu(browser.process) - browser0) / wall, 2)
        result["page_errors"] = page.errors()
        browser.close()
    if helper is not None:
        result["sse_client"] = json.loads(helper.communicate(timeout=30)[0])
    bus.stop()
    sink.stop()
    return result


def page_weight() -> dict:
    files = {name: (ROOT / "edge" / "dashboard" / name).read_bytes() for name, _ in set(ASSETS.values())}
    return {"files": {name: len(data) for name, data in sorted(files.items())},
            "total_bytes": sum(map(len, files.values())),
            "total_gzip_bytes": sum(len(gzip.compress(data, 9)) for data in files.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", default="none,sse,chromium")
    args = parser.parse_args()
    runs = [measure(client, args.seconds) for client in args.clients.split(",")]
    weight = page_weight()
    report = {
        "goal_pct_of_core": 2.0, "rates_per_s": RATES, "update_interval_s": DashboardConfig().update_interval_s,
        "history_s": DashboardConfig().history_s, "runs": runs, "page_weight": weight,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]},
    }
    print(f"{'client':<10} {'wall s':>7} {'sink CPU s':>10} {'% core':>7} {'pushes':>7} {'snapshot B':>10} "
          f"{'browser % core':>14}  verdict")
    for run in runs:
        browser = "—" if run["browser_pct_of_core"] is None else f"{run['browser_pct_of_core']:.1f}"
        verdict = "PASS" if run["sink_pct_of_core"] < report["goal_pct_of_core"] else "FAIL"
        print(f"{run['client']:<10} {run['wall_s']:>7.1f} {run['sink_cpu_s']:>10.3f} {run['sink_pct_of_core']:>7.2f} "
              f"{run['pushes']:>7} {run['snapshot_bytes']:>10} {browser:>14}  {verdict}")
    print(f"page weight: {weight['total_bytes']} bytes ({weight['total_gzip_bytes']} gzipped) {weight['files']}")
    out = ROOT / "benchmarks" / "results" / "dashboard_cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temporary, out)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
