"""Does the runtime's memory grow without bound when face, voice and EEG run for an hour in real time?

A kiosk runs for months; 0.67 MiB/min of growth is a gigabyte a day. This script runs the set-up of issue 16's
"memory" row as a device would, as a subprocess (`emotion-edge run --config F --print-events`):
- face: the built-in demo video (640x480 MJPG, 15 fps, one to three real faces), `realtime = true`, looping;
- voice: an espeak-ng sentence as a looping WAV file (`[audio_file] loop = true`);
- EEG: `emotion-edge simulate-muse` over LSL on loopback, in real time;
- a real mosquitto on a free loopback port, with a subscriber on the events so every event is delivered and acked.
Every `--interval` seconds it samples the runtime's VmRSS (/proc/PID/status), smaps_rollup's Anonymous and the
file-backed rest (Rss - Anonymous), threads and open fds, and the events printed so far.

`--tracemalloc` runs the runtime in a child Python that starts `tracemalloc` (25 frames) before importing edge and,
every `--snapshot-every` seconds after a warm-up, writes the largest growths since the warm-up snapshot (by
traceback) and the object counts by type that grew (gc) to `<workdir>/tracemalloc-<n>.txt`. Tracing costs CPU
and memory of its own, so its RSS is not the headline figure. `--malloc-arena-max N` sets MALLOC_ARENA_MAX for the
runtime (glibc arena fragmentation from many threads).

Usage: python benchmarks/memory_growth.py --minutes 60 [--label NAME] [--tracemalloc] [--malloc-arena-max 2]
Writes benchmarks/results/memory_growth[-LABEL].json and prints RSS at 1, 5, 15, 30, 45 and 60 min and the slope of
each 15-minute segment (least squares over its samples, MiB/min).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mqtt_broker import Broker, Subscriber  # noqa: E402  (a real mosquitto, as the tests use)
from tests.runtime_helpers import toml_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SPEECH = ("Good morning. The weather is lovely today, and I am looking forward to the weekend. "
          "Could you please turn the music up a little?")
CHECKPOINTS_MIN = (1, 5, 15, 30, 45, 60)

TRACEMALLOC_WRAPPER = textwrap.dedent("""
    import gc, sys, threading, time, tracemalloc
    from collections import Counter
    tracemalloc.start(25)
    out_dir, warmup, every = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])

    def counts():
        return Counter(type(o).__name__ for o in gc.get_objects())

    def watch():
        time.sleep(warmup)
        gc.collect()
        base, base_counts, started = tracemalloc.take_snapshot(), counts(), time.monotonic()
        number = 0
        while True:
            time.sleep(every)
            gc.collect()
            snap, now_counts = tracemalloc.take_snapshot(), counts()
            number += 1
            current, peak = tracemalloc.get_traced_memory()
            lines = [f"after {time.monotonic() - started:.0f} s past warm-up; traced {current / 2**20:.2f} MiB "
                     f"(peak {peak / 2**20:.2f})", "", "== top growth by traceback"]
            for stat in snap.compare_to(base, "traceback")[:12]:
                lines.append(f"{stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks "
                             f"(now {stat.size / 1024:.1f} KiB)")
                lines.extend("    " + line for line in stat.traceback.format()[-12:])
            lines += ["", "== top growth by line"]
            for stat in snap.compare_to(base, "lineno")[:25]:
                lines.append(str(stat))
            lines += ["", "== object counts that grew (gc)"]
            grown = {k: now_counts[k] - base_counts.get(k, 0) for k in now_counts}
            for name, diff in sorted(grown.items(), key=lambda kv: -kv[1])[:25]:
                if diff > 0:
                    lines.append(f"{name}: +{diff} (now {now_counts[name]})")
            path = f"{out_dir}/tracemalloc-{number}.txt"
            with open(path + ".tmp", "w") as handle:
                handle.write("\\n".join(lines) + "\\n")
            import os
            os.replace(path + ".tmp", path)

    threading.Thread(target=watch, daemon=True, name="tracemalloc-watch").start()
    from edge.cli import main
    sys.exit(main(sys.argv[4:]))
""")


def read_memory(pid: int) -> dict | None:
    """VmRSS, anonymous and file-backed resident memory (MiB), threads and fds of `pid`; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None

    def field(text: str, name: str) -> float | None:
        for line in text.splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024.0
        return None

    rss, anon = field(rollup, "Rss"), field(rollup, "Anonymous")
    threads = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:")), None)
    return {"rss_mib": field(status, "VmRSS"), "anon_mib": anon,
            "file_mib": None if rss is None or anon is None else rss - anon, "threads": threads, "fds": fds}


def count_lines(path: Path, prefix: str = '{"device_id"') -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.startswith(prefix.encode()))
    except FileNotFoundError:
        return 0


def make_inputs(work: Path) -> tuple[Path, Path]:
    """The demo video and a spoken sentence, made the way .ci/demo.sh makes them."""
    video, speech = work / "faces.avi", work / "speech.wav"
    subprocess.run([sys.executable, "-m", "edge.cli", "demo-video", str(video)], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(speech), SPEECH], check=True, capture_output=True, timeout=60)
    return video, speech


def start_muse(work: Path, name: str, speed: float = 1.0) -> subprocess.Popen:
    log = open(work / f"muse-{name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "simulate-muse", "--name", name, "--source-id", name,
                             "--speed", str(speed)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def describe(code: Path) -> str | None:
    """`git describe --always --dirty` of the code the runtime ran, or the COMMIT file of an exported copy."""
    result = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=code, capture_output=True, text=True)
    if result.returncode == 0:
        return result.stdout.strip()
    marker = code / "COMMIT"
    return marker.read_text().strip() if marker.exists() else None


def linear_slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points, None with fewer than 3."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return None if var == 0 else sum((x - mx) * (y - my) for x, y in points) / var


def summarise(samples: list[dict], segment_min: float = 15.0) -> dict:
    """RSS at the checkpoints, and the slope (MiB/min) of RSS and anonymous memory per segment."""
    def nearest(minute: float) -> dict | None:
        if not samples or samples[-1]["t_s"] < minute * 60 - 15:
            return None
        return min(samples, key=lambda s: abs(s["t_s"] - minute * 60))

    at = {}
    for minute in CHECKPOINTS_MIN:
        sample = nearest(minute)
        at[f"{minute}min"] = None if sample is None else {k: sample[k] for k in ("t_s", "rss_mib", "anon_mib",
                                                                                 "file_mib")}
    segments = []
    end = samples[-1]["t_s"] if samples else 0
    start = 0.0
    while start < end - 60:
        stop = start + segment_min * 60
        chunk = [s for s in samples if start <= s["t_s"] <= stop]
        segments.append({"from_min": start / 60, "to_min": min(stop, end) / 60,
                         "rss_mib_per_min": linear_slope([(s["t_s"] / 60, s["rss_mib"]) for s in chunk]),
                         "anon_mib_per_min": linear_slope([(s["t_s"] / 60, s["anon_mib"]) for s in chunk])})
        start = stop
    half = [s for s in samples if s["t_s"] >= end / 2]
    return {"at": at, "segments": segments,
            "second_half_rss_mib_per_min": linear_slope([(s["t_s"] / 60, s["rss_mib"]) for s in half])}


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose `edge` the runtime runs")
    parser.add_argument("--face-models", type=Path, default=ROOT / "models" / "face")
    parser.add_argument("--voice-models", type=Path, default=ROOT / "models" / "voice")
    parser.add_argument("--label", default="", help="suffix of the JSON file: memory_growth-LABEL.json")
    parser.add_argument("--workdir", type=Path, help="keep inputs, logs and snapshots here (default: a temp dir)")
    parser.add_argument("--tracemalloc", action="store_true", help="run the runtime under tracemalloc (see above)")
    parser.add_argument("--snapshot-every", type=float, default=300.0, help="seconds between tracemalloc diffs")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before the tracemalloc baseline")
    parser.add_argument("--malloc-arena-max", type=int, help="MALLOC_ARENA_MAX for the runtime")
    parser.add_argument("--no-voice", action="store_true")
    parser.add_argument("--no-eeg", action="store_true")
    parser.add_argument("--no-face", action="store_true")
    args = parser.parse_args(argv)
    for path in ([] if args.no_face else [args.face_models]) + ([] if args.no_voice else [args.voice_models]):
        if not path.is_dir():
            print(f"memory_growth: error: no model directory {path}; build it with `emotion-export "
                  f"{'face' if path == args.face_models else 'voice'} --out {path}` or pass --face-models/"
                  "--voice-models", file=sys.stderr)
            return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="memory-growth-"))
    work.mkdir(parents=True, exist_ok=True)
    video, speech = make_inputs(work)
    broker = Broker(work).start()
    hub = Subscriber(broker.port, ["emotion_edge/+/+/event"])
    muse_name = f"mem-muse-{os.getpid()}"
    muse = None if args.no_eeg else start_muse(work, muse_name)
    config = {
        "device": {"id": "memdev", "data_dir": str(work / "data"), "health_interval_s": 10.0},
        "camera": {"source": str(video), "on_end": "loop", "realtime": True},
        "face": {"enabled": not args.no_face, "models": str(args.face_models.resolve())},
        "voice": {"enabled": not args.no_voice, "source": "file", "models": str(args.voice_models.resolve())},
        "audio_file": {"path": str(speech), "loop": True},
        "eeg": {"enabled": not args.no_eeg},
        "lsl": {"name": muse_name},
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
    }
    config_path = work / "runtime.toml"
    config_path.write_text(toml_text(config))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    if args.malloc_arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
    run_args = ["run", "--config", str(config_path), "--print-events", "--duration", str(args.minutes * 60)]
    if args.tracemalloc:
        command = [sys.executable, "-c", TRACEMALLOC_WRAPPER, str(work), str(args.warmup), str(args.snapshot_every),
                   *run_args]
    else:
        command = [sys.executable, "-m", "edge.cli", *run_args]
    out_path, err_path = work / "runtime.out", work / "runtime.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        runtime = subprocess.Popen(command, stdout=out, stderr=err, cwd=args.code, env=env)
    started = time.monotonic()
    code_version = describe(args.code)  # now: a shared tree may change while the run goes on
    samples: list[dict] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"memory_growth: runtime pid {runtime.pid}, {args.minutes} min, workdir {work}", flush=True)
    try:
        while runtime.poll() is None and not stop.is_set():
            memory = read_memory(runtime.pid)
            if memory is not None:
                elapsed = time.monotonic() - started
                ticks = Path(f"/proc/{runtime.pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu_s = (int(ticks[11]) + int(ticks[12])) / os.sysconf("SC_CLK_TCK")
                sample = {"t_s": round(elapsed, 1), **memory, "cpu_s": cpu_s, "events_printed": count_lines(out_path),
                          "events_at_hub": len(hub.messages)}
                samples.append(sample)
                if len(samples) % 6 == 1:
                    print(f"  {elapsed / 60:6.1f} min  RSS {sample['rss_mib']:.1f} MiB  anon "
                          f"{fmt(sample['anon_mib'])}  file {fmt(sample['file_mib'])}  threads {sample['threads']}"
                          f"  events {sample['events_printed']}", flush=True)
                partial = work / "samples.json"
                partial.with_suffix(".tmp").write_text(json.dumps(samples))
                os.replace(partial.with_suffix(".tmp"), partial)
            stop.wait(args.interval - (time.monotonic() - started) % args.interval)
    finally:
        if runtime.poll() is None:
            runtime.send_signal(signal.SIGTERM)
            try:
                runtime.wait(timeout=30)
            except subprocess.TimeoutExpired:
                runtime.kill()
                runtime.wait()
        if muse is not None:
            muse.terminate()
            muse.wait(timeout=10)
        time.sleep(1)
        hub.close()
        broker.stop()
    summary = summarise(samples)
    result = {
        "setup": {"minutes": args.minutes, "interval_s": args.interval, "tracemalloc": args.tracemalloc,
                  "malloc_arena_max": args.malloc_arena_max, "face": not args.no_face, "voice": not args.no_voice,
                  "eeg": not args.no_eeg, "video": "edge.demo 640x480 MJPG 15 fps, realtime, loop",
                  "python": platform.python_version(), "workdir": str(work),
                  "code": str(args.code), "git_at_start": code_version},
        "exit_code": runtime.returncode,
        "events_printed": count_lines(out_path), "events_at_hub": len(hub.messages),
        "runtime_stderr_tail": err_path.read_text(errors="replace")[-1500:],
        "summary": summary, "samples": samples,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "memory_growth" + (f"-{args.label}" if args.label else "") + ".json"
    temp = RESULTS / (name + ".tmp")
    temp.write_text(json.dumps(result, indent=1))
    os.replace(temp, RESULTS / name)
    print(f"\nmemory_growth: exit {runtime.returncode}, {result['events_printed']} events printed, "
          f"{result['events_at_hub']} at the hub")
    print(f"{'at':>6} {'RSS MiB':>8} {'anon':>7} {'file':>7}")
    for key, value in summary["at"].items():
        if value:
            print(f"{key:>6} {value['rss_mib']:8.1f} {fmt(value['anon_mib']):>7} {fmt(value['file_mib']):>7}")
    print(f"{'segment':>14} {'RSS MiB/min':>12} {'anon MiB/min':>13}")
    for seg in summary["segments"]:
        print(f"{seg['from_min']:5.0f}-{seg['to_min']:<5.0f}min {fmt(seg['rss_mib_per_min'], '+.3f'):>12} "
              f"{fmt(seg['anon_mib_per_min'], '+.3f'):>13}")
    print(f"second half: {fmt(summary['second_half_rss_mib_per_min'], '+.3f')} MiB/min; "
          f"wrote {RESULTS / name}")
    return 0 if runtime.returncode in (0, -signal.SIGTERM) else 1


if __name__ == "__main__":
    sys.exit(main())
