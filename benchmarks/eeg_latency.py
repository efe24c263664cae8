"""EEG analyzer latency and CPU at the default 0.5 s hop, against a real-time simulated Muse over LSL.

The simulator runs in its own process (so its CPU is not counted); this process runs the LSL
source and `EEGAnalyzer` (the runtime's EEG analyzer, index estimator) as the worker does. Per window:
- processing: from the moment the chunk that completes a window was pulled from LSL to its
  observation being built (filters, features, quality, index);
- capture-to-observation: the observation's latency_ms, from the window's last sample (in Unix
  time) to the observation; includes waiting for the rest of its 12-sample chunk (up to 43 ms at
  256 Hz), LSL transport and queueing.
CPU share = process CPU time / wall time while streaming, as a fraction of ONE core; analyzer CPU
per window is the analyzer's own thread CPU time (its health `cpu_ms_per_window`).

Usage: python benchmarks/eeg_latency.py [--seconds 60]
Writes benchmarks/results/eeg_latency.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.eeg.config import EEGConfig
from edge.eeg.analyzer import EEGAnalyzer
from edge.sources.lsl import LSLSource, LSLSourceConfig, load_pylsl


def _stats(values_ms: list[float]) -> dict:
    a = np.asarray(values_ms)
    return {"n": int(a.size), "median_ms": round(float(np.median(a)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3),
            "max_ms": round(float(a.max()), 3), "mean_ms": round(float(a.mean()), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of streaming to measure")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "eeg_latency.json"))
    args = parser.parse_args(argv)
    pylsl = load_pylsl()
    sid = f"bench-{uuid.uuid4().hex[:8]}"
    warmup_s = 6.0  # first window needs 4 s; skip start-up effects
    sim = subprocess.Popen([sys.executable, "-m", "edge.eeg.simulator", "--source-id", sid,
                            "--duration", str(args.seconds + warmup_s + 3)],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = EEGConfig()
    source = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=2.0))
    source.start()
    analyzer = EEGAnalyzer(config, source=source)
    processing, capture = [], []
    try:
        if not source.wait_connected(15.0):
            raise SystemExit("simulator stream not found")
        start = time.monotonic()
        cpu0 = wall0 = None
        while time.monotonic() - start < args.seconds + warmup_s:
            chunk = source.read(timeout=0.5)
            if chunk is None:
                continue
            observations = analyzer.process(chunk)
            done = pylsl.local_clock()
            measuring = time.monotonic() - start >= warmup_s
            if measuring and cpu0 is None:
                cpu0, wall0 = time.process_time(), time.monotonic()
            if measuring:
                for observation in observations:
                    processing.append((done - chunk.received) * 1000.0)
                    capture.append(observation.latency_ms)
        cpu_share = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    finally:
        source.stop()
        sim.terminate()
        sim.wait(10)
    health = analyzer.health()
    result = {
        "benchmark": "eeg_latency",
        "config": {"window_s": config.window_s, "hop_s": config.hop_s, "rate_hz": 256, "chunk": 12,
                   "channels": list(config.channels), "notch_hz": config.notch_hz},
        "seconds_measured": args.seconds,
        "observations": len(processing),
        "processing": _stats(processing),
        "capture_to_observation": _stats(capture),
        "cpu_share_of_one_core": round(cpu_share, 4),
        "analyzer_cpu_ms_per_window": health["cpu_ms_per_window"],
        "rejected_windows": health["rejected"],
        "windows": health["windows"],
        "machine": {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]},
        "targets": {"p95_ms": 20.0, "cpu_share": 0.05},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)
    print(f"EEG latency over {args.seconds:g} s, {len(processing)} observations "
          f"(window {config.window_s:g} s, hop {config.hop_s:g} s)")
    print(f"{'measure':<22}{'median ms':>11}{'p95 ms':>9}{'max ms':>9}")
    for name in ("processing", "capture_to_observation"):
        s = result[name]
        print(f"{name:<22}{s['median_ms']:>11.2f}{s['p95_ms']:>9.2f}{s['max_ms']:>9.2f}")
    print(f"CPU share of one core: {100 * cpu_share:.2f} %   (targets: p95 < 20 ms, CPU < 5 %); "
          f"analyzer CPU {health['cpu_ms_per_window']} ms per window")
    print(f"rejected windows: {result['rejected_windows']} of {result['windows']}; "
          f"load average {result['machine']['load_average_1_5_15']}")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
