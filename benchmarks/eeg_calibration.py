"""EEG calibration on simulated sessions: held-out accuracy, a no-difference control, and CPU cost.

For each seed: a calibration session and a second session (other seed, other block order) are simulated
with the conditions of `edge.eeg.simulator.CONDITIONS` (3 rounds of neutral / positive / negative, 20 s
blocks, 5 s rests, 6 blinks a minute), and a control session with the same markers and no difference.
Measured:
- cross-validated accuracy of `calibrate` (whole blocks held out) on the calibration session;
- accuracy of the EEGAnalyzer with that calibration over the second session (windows inside blocks, after
  the 2 s settle), i.e. a session the model never saw;
- the same two numbers for the control (its second session has no difference either);
- CPU: process time of `calibrate_recording` (features + cross-validation + final fit) and the analyzer's
  CPU per 1 s window (thread time), on this machine.
Numbers are about the simulator's made-up effect sizes; they show the code learns, not how well a real
wearer's EEG separates.

Usage: python benchmarks/eeg_calibration.py [--seeds 5]
Writes benchmarks/results/eeg_calibration.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.eeg.analyzer import EEGAnalyzer
from edge.eeg.calibration import block_order, calibrate_recording, default_path, marker_blocks, save_calibration
from edge.eeg.config import EEGConfig
from edge.eeg.recorder import load_recording
from edge.eeg.simulator import SimulatorConfig, condition_segments, simulate_session

CLASSES = ["neutral", "positive", "negative"]
SETTLE_S = 2.0


class _Chunk:
    def __init__(self, timestamps, data, new_stream):
        self.timestamps, self.data, self.received, self.gaps, self.new_stream = timestamps, data, 0.0, [], new_stream


def _session(folder: Path, name: str, seed: int, effect: float) -> Path:
    order = block_order(CLASSES, 3)
    order = order[seed % 3:] + order[:seed % 3]
    return simulate_session(folder / name, condition_segments(order, 20.0, 5.0, effect),
                            SimulatorConfig(seed=seed, blinks_per_min=6.0, chunk=128))


def _analyzer_accuracy(data_dir: Path, path: Path) -> tuple[float, int, float]:
    rec = load_recording(path)
    offset = float(rec.unix_times[0] - rec.timestamps[0])
    analyzer = EEGAnalyzer(EEGConfig(), data_dir, labels=rec.channels, rate=rec.rate, to_unix=lambda t: t + offset)
    observations = []
    for start in range(0, len(rec.timestamps), 12):
        observations += analyzer.process(_Chunk(rec.timestamps[start:start + 12], rec.data[start:start + 12],
                                                start == 0))
    blocks = marker_blocks(rec.markers, float(rec.timestamps[-1]))
    scored = []
    for o in observations:
        end = o.timestamp - offset
        block = next((b for b in blocks if b.start + SETTLE_S <= end - analyzer.window_s and end < b.end), None)
        if block is not None and o.label is not None:
            scored.append(o.label == block.label)
    return float(np.mean(scored)), len(scored), analyzer.health()["cpu_ms_per_window"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seed in range(1, args.seeds + 1):
            row = {"seed": seed}
            for kind, effect in (("real", 1.0), ("control", 0.0)):
                train = _session(folder, f"{kind}-train-{seed}", seed * 10, effect)
                other = _session(folder, f"{kind}-other-{seed}", seed * 10 + 1, effect)
                started = time.process_time()
                document = calibrate_recording(load_recording(train), EEGConfig())
                cpu = time.process_time() - started
                data_dir = folder / f"{kind}-{seed}"
                save_calibration(default_path(data_dir), document)
                accuracy, windows, window_ms = _analyzer_accuracy(data_dir, other)
                row[kind] = {"cv_accuracy": document["evaluation"]["accuracy"],
                             "chance": document["evaluation"]["chance"],
                             "block_accuracy": document["evaluation"]["block_accuracy"],
                             "other_session_accuracy": round(accuracy, 4), "other_session_windows": windows,
                             "calibrate_cpu_s": round(cpu, 2), "analyzer_cpu_ms_per_window": window_ms}
            rows.append(row)
            real, control = row["real"], row["control"]
            print(f"seed {seed}: real cv {real['cv_accuracy']:.3f} other {real['other_session_accuracy']:.3f} | "
                  f"control cv {control['cv_accuracy']:.3f} other {control['other_session_accuracy']:.3f} "
                  f"(chance {real['chance']:.3f})", flush=True)

    def mean(kind, key):
        return round(float(np.mean([r[kind][key] for r in rows])), 4)

    summary = {kind: {key: mean(kind, key) for key in ("cv_accuracy", "other_session_accuracy", "chance",
                                                        "block_accuracy", "calibrate_cpu_s",
                                                        "analyzer_cpu_ms_per_window")}
               for kind in ("real", "control")}
    print(f"\n{'':10} {'cv acc':>8} {'other session':>14} {'chance':>8} {'blocks':>8} {'calib CPU s':>12} "
          f"{'ms/window':>10}")
    for kind in ("real", "control"):
        s = summary[kind]
        print(f"{kind:10} {s['cv_accuracy']:8.3f} {s['other_session_accuracy']:14.3f} {s['chance']:8.3f} "
              f"{s['block_accuracy']:8.3f} {s['calibrate_cpu_s']:12.2f} {s['analyzer_cpu_ms_per_window']:10.3f}")
    out = ROOT / "benchmarks" / "results" / "eeg_calibration.json"
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                                   "cpus": os.cpu_count(), "seeds": rows, "mean": summary}, indent=1))
    os.replace(tmp_out, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
