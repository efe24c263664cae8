"""EEG gap warnings and gap counts from two senders on a real pylsl outlet (loopback), as in issue 16.

Both push 12-sample chunks, each with one timestamp: its receipt time, 0-20 ms after the chunk's last sample
(a muselsl-style Bluetooth bridge). One loses nothing; the other never sends the second half of every second
(a real 0.5 s gap per second). Prints a table of "EEG gap" log lines and the source's gap stats, and writes
benchmarks/results/eeg_gap_log.json. Usage: python benchmarks/eeg_gap_log.py [--seconds 22]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from edge.eeg.simulator import LABELS, make_outlet
from edge.sources.lsl import LSLSource, LSLSourceConfig, load_pylsl

FS = 256.0
RESULTS = Path(__file__).parent / "results" / "eeg_gap_log.json"


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def send(outlet, stop: threading.Event, lossy: bool, sent: list) -> None:
    pylsl = load_pylsl()
    rng, start, k, skipping = random.Random(1), pylsl.local_clock() + 0.1, 0, False
    while not stop.is_set():
        last = start + (12 * k + 11) / FS
        k += 1
        if lossy and (last - start) % 1.0 >= 0.5:
            sent[0] += not skipping
            skipping = True
            continue
        skipping = False
        delay = last + rng.uniform(0.0, 0.020) - pylsl.local_clock()
        if delay > 0:
            time.sleep(delay)
        outlet.push_chunk(np.zeros((12, len(LABELS)), dtype=np.float32), pylsl.local_clock())


def measure(seconds: float, lossy: bool) -> dict:
    sid = f"gaplog-{uuid.uuid4().hex[:8]}"
    outlet = make_outlet("GapLog", sid, FS, LABELS, 12)
    lines = Lines()
    logger = logging.getLogger("edge.sources.lsl")
    logger.addHandler(lines)
    logger.setLevel(logging.WARNING)  # the gap warnings, whatever the root level
    source = LSLSource(LSLSourceConfig(source_id=sid, resolve_timeout_s=0.5))
    source.start()
    if not source.wait_connected(10.0):
        raise SystemExit("the LSL source did not connect to its own outlet on loopback")
    stop, sent = threading.Event(), [0]
    sender = threading.Thread(target=send, args=(outlet, stop, lossy, sent), daemon=True)
    sender.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        source.read(timeout=0.1)
    stop.set()
    sender.join()
    source.stop()  # judges what is still held and flushes the summary
    logger.removeHandler(lines)
    stats = source.stats()
    gap_lines = [m for m in lines.messages if "EEG gap" in m]
    return {"sender": "0.5 s lost every second" if lossy else "nothing lost", "seconds": seconds,
            "gaps_sent": sent[0] if lossy else 0, "gap_log_lines": len(gap_lines), "stats_gaps": stats["gaps"],
            "dropped_samples": stats["dropped_samples"], "samples": stats["samples"], "lines": gap_lines[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=22.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows = [measure(args.seconds, lossy=False), measure(args.seconds, lossy=True)]
    print(f"{'sender':<26} {'s':>4} {'gaps sent':>9} {'log lines':>9} {'stats gaps':>10} {'dropped':>8}")
    for row in rows:
        print(f"{row['sender']:<26} {row['seconds']:>4.0f} {row['gaps_sent']:>9} {row['gap_log_lines']:>9} "
              f"{row['stats_gaps']:>10} {row['dropped_samples']:>8}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    temporary = RESULTS.with_suffix(".tmp")
    temporary.write_text(json.dumps({"rows": rows}, indent=2))
    temporary.replace(RESULTS)


if __name__ == "__main__":
    main()
