"""Process CPU of the voice modality alone in real time: file source + analyzer, before vs after issue 17.

Each run is a fresh process that replays espeak-ng speech (with pauses) through the real-time
`AudioFileSource` into the voice analyzer with the real exported model, for `--seconds` of wall time
after a warm-up, and reports time.process_time() / wall time (all of its threads: the source's reader
and the analyzer), plus time.thread_time() of the analyzing thread alone. No broker, no publisher:
only the voice path. "before" runs the tree of commit BEFORE (`git archive` into a temp dir, its
VoicePipeline), "after" the working tree (VoiceAnalyzer); runs are interleaved so both see the same
machine load. Two input rates: 22050 Hz (the model's, no resampling) and 16000 Hz (the microphone
default, resampled per window).

Usage: python benchmarks/voice_cpu.py [--model models/voice/voice.fp16.tflite] [--seconds 25] [--rounds 2]
Writes benchmarks/results/voice_cpu.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from results_file import write_result  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "cb2d833"  # the last commit before the voice analyzer of issue 17
TARGET_PERCENT = 2.0
SPEECH = (("en-us", 150, "The quick brown fox jumps over the lazy dog while the children laugh in the garden."),
          ("en+m7", 130, "Please stay calm, everything will be fine, we simply need to wait a little longer."),
          ("de", 170, "I cannot believe you did that again, it is absolutely wonderful news for everyone here."),
          ("en-us+f3", 190, "Somebody left the door open last night and now the whole house is freezing cold."))


def make_audio(directory: Path, rate: int) -> Path:
    """About 30 s of speech with 1.5 s pauses, written at `rate` (the file loops while measuring)."""
    import numpy as np
    import soundfile

    pieces = []
    for index, (voice, wpm, text) in enumerate(SPEECH * 2):
        path = directory / f"s{index}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text], check=True,
                       capture_output=True, timeout=60)
        samples, native = soundfile.read(str(path), dtype="float32")
        pieces += [samples, np.zeros(int(1.5 * native), np.float32)]
    audio = np.concatenate(pieces)
    if rate != native:
        import soxr

        audio = soxr.resample(audio, native, rate, "VHQ").astype(np.float32)
    out = directory / f"speech_{rate}.wav"
    soundfile.write(str(out), audio, rate, subtype="PCM_16")
    return out


def child(args) -> int:
    """One measured run (in its own process, with `--tree` first on sys.path)."""
    sys.path.insert(0, args.tree)
    from edge.backends import open_model
    from edge.sources.audio import AudioFileConfig, AudioFileSource
    from edge.voice.vad import VadConfig

    model = open_model(Path(args.model), "auto", 1)
    try:
        from edge.voice.analyzer import VoiceAnalyzer
        try:
            from edge.voice.config import VoiceConfig
        except ImportError:  # the tree before VoiceConfig had a module of its own
            from edge.voice.analyzer import VoiceConfig

        analyzer = VoiceAnalyzer(model, config=VoiceConfig(), vad_config=VadConfig())
        kind = "VoiceAnalyzer"
    except ImportError:
        from edge.voice.pipeline import VoiceConfig, VoicePipeline

        analyzer = VoicePipeline(model, config=VoiceConfig(), vad_config=VadConfig())
        kind = "VoicePipeline"
    source = AudioFileSource(AudioFileConfig(path=args.audio, realtime=True, loop=True))
    source.start()
    windows = outputs = 0
    deadline = None
    cpu0 = thread0 = wall0 = 0.0
    while True:
        window = source.read(timeout=0.5)
        if window is None:
            continue
        result = analyzer.process(window)
        if deadline is None:  # the first window loaded every lazy import and cache: measure from here
            cpu0, thread0, wall0 = time.process_time(), time.thread_time(), time.monotonic()
            deadline = wall0 + args.seconds
            continue
        windows += 1
        outputs += len(result) if isinstance(result, list) else int(result is not None)
        if time.monotonic() >= deadline:
            break
    cpu, thread, wall = time.process_time() - cpu0, time.thread_time() - thread0, time.monotonic() - wall0
    source.stop()
    print(json.dumps({"impl": kind, "cpu_s": cpu, "analyzer_thread_s": thread, "wall_s": wall,
                      "windows": windows, "outputs": outputs}))
    return 0


def run_child(tree: str, audio: Path, model: str, seconds: float) -> dict:
    command = [sys.executable, __file__, "--child", "--tree", tree, "--audio", str(audio), "--model", model,
               "--seconds", str(seconds)]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # the device's default BLAS threading, as the service runs
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, env=env, cwd=tree)
    if result.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "voice" / "voice.fp16.tflite"))
    parser.add_argument("--seconds", type=float, default=25.0, help="measured wall time per run (>= 25)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved before/after runs per input rate")
    parser.add_argument("--rates", type=int, nargs="+", default=[22050, 16000])
    parser.add_argument("--impls", nargs="+", default=["before", "after"], choices=["before", "after"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "voice_cpu.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if not Path(args.model).is_file():
        print(f"no voice model at {args.model}; run emotion-export voice --out models/voice or pass --model",
              file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "edge"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        trees = {"before": str(before), "after": str(ROOT)}
        for rate in args.rates:
            audio = make_audio(Path(tmp), rate)
            for round_ in range(args.rounds):
                for impl in args.impls:
                    run = run_child(trees[impl], audio, args.model, args.seconds)
                    row = {"impl": impl, "code": run["impl"], "rate": rate, "round": round_,
                           "cpu_percent": round(100 * run["cpu_s"] / run["wall_s"], 3),
                           "analyzer_thread_percent": round(100 * run["analyzer_thread_s"] / run["wall_s"], 3),
                           "wall_s": round(run["wall_s"], 2), "windows": run["windows"], "outputs": run["outputs"]}
                    rows.append(row)
                    print(f"  {impl:<6} {rate:>5} Hz round {round_}: {row['cpu_percent']:.2f}% "
                          f"(analyzer thread {row['analyzer_thread_percent']:.2f}%)", flush=True)
    summary = {}
    for impl in args.impls:
        for rate in args.rates:
            picked = [r for r in rows if r["impl"] == impl and r["rate"] == rate]
            summary[f"{impl}@{rate}"] = {
                "cpu_percent_mean": round(sum(r["cpu_percent"] for r in picked) / len(picked), 3),
                "analyzer_thread_percent_mean": round(
                    sum(r["analyzer_thread_percent"] for r in picked) / len(picked), 3),
                "runs": len(picked)}
    header = f"{'impl':<8} {'rate Hz':>8} {'process CPU %':>14} {'analyzer thread %':>18} {'runs':>5}"
    print(header)
    print("-" * len(header))
    for key, value in summary.items():
        impl, rate = key.split("@")
        print(f"{impl:<8} {rate:>8} {value['cpu_percent_mean']:>14.2f} {value['analyzer_thread_percent_mean']:>18.2f} "
              f"{value['runs']:>5}")
    after = [v["cpu_percent_mean"] for k, v in summary.items() if k.startswith("after@")]
    verdict = bool(after) and max(after) < TARGET_PERCENT
    print(f"{'PASS' if verdict else 'FAIL'}  voice under {TARGET_PERCENT}% of one core at every rate (after)")
    result = {"target_percent": TARGET_PERCENT, "after_below_target": verdict, "before_commit": BEFORE,
              "seconds_per_run": args.seconds, "model": Path(args.model).name,
              "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                          "python": platform.python_version(), "load_avg_at_end": os.getloadavg()},
              "summary": summary, "runs": rows, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
