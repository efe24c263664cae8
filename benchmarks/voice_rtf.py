"""Voice real-time factor per stage (features, model, total) for every voice artifact, single thread.

Real speech: espeak-ng sentences in several voices and rates, cut into the device's 2.5 s windows
at 22050 Hz. Per window we time the numpy frontend the artifact's manifest names (the 181
librosa-equivalent features, or the log-mel image of a trained model) and one inference on the
device backend (LiteRT or ONNX Runtime, 1 thread). RTF = processing time / window duration; the
target is below 0.05 (a 2.5 s window processed in under 125 ms).

Usage: python benchmarks/voice_rtf.py [--models models/voice [models/voice-mine ...]] [--repeats 3]
Writes benchmarks/results/voice_rtf.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import soundfile  # noqa: E402

from edge.backends import open_model  # noqa: E402
from edge.voice.features import MODEL_RATE, FeatureExtractor  # noqa: E402
from edge.voice.logmel import LogMelConfig, log_mel  # noqa: E402
from results_file import write_result  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

TARGET_RTF = 0.05
WINDOW_S = 2.5
SPEECH = (("en-us", 150, "The quick brown fox jumps over the lazy dog while the children laugh in the garden."),
          ("de", 170, "I cannot believe you did that again, it is absolutely wonderful news for everyone here."),
          ("en+m7", 130, "Please stay calm, everything will be fine, we simply need to wait a little longer."),
          ("es", 190, "Somebody left the door open last night and now the whole house is freezing cold."))


def speech_windows() -> list[np.ndarray]:
    windows = []
    length = int(WINDOW_S * MODEL_RATE)
    with tempfile.TemporaryDirectory() as tmp:
        for index, (voice, wpm, text) in enumerate(SPEECH):
            path = Path(tmp) / f"{index}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text], check=True,
                           capture_output=True)
            audio, rate = soundfile.read(str(path), dtype="float32")
            assert rate == MODEL_RATE, rate
            windows += [audio[s:s + length] for s in range(0, len(audio) - length + 1, MODEL_RATE)]
    return windows


def frontend(preprocessing: dict):
    if preprocessing.get("frontend") == "logmel":
        config = LogMelConfig.from_manifest(preprocessing)
        return "logmel", lambda w: log_mel(w, config)[None]
    extractor = FeatureExtractor()
    return "features181", lambda w: extractor.extract(w).reshape(1, -1, 1)


def measure(artifact: Path, windows: list[np.ndarray], repeats: int) -> dict:
    model = open_model(artifact, threads=1)
    name, compute = frontend(model.manifest.data["preprocessing"])
    model.predict(compute(windows[0]))
    features_s, model_s = [], []
    for _ in range(repeats):
        for window in windows:
            start = time.perf_counter()
            tensor = compute(window)
            middle = time.perf_counter()
            model.predict(tensor)
            end = time.perf_counter()
            features_s.append(middle - start)
            model_s.append(end - middle)
    f, m = np.asarray(features_s), np.asarray(model_s)
    total = f + m
    duration = len(windows[0]) / MODEL_RATE
    return {"artifact": f"{artifact.parent.name}/{artifact.name}", "backend": model.key, "frontend": name,
            "windows": int(len(total)), "window_s": duration,
            "features_ms_median": round(float(np.median(f)) * 1000, 3),
            "model_ms_median": round(float(np.median(m)) * 1000, 3),
            "total_ms_median": round(float(np.median(total)) * 1000, 3),
            "total_ms_p95": round(float(np.percentile(total, 95)) * 1000, 3),
            "rtf_features": round(float(np.median(f)) / duration, 5),
            "rtf_model": round(float(np.median(m)) / duration, 5),
            "rtf_total": round(float(np.median(total)) / duration, 5),
            "rtf_total_p95": round(float(np.percentile(total, 95)) / duration, 5),
            "below_target": bool(np.percentile(total, 95) / duration < TARGET_RTF)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", type=Path, default=[ROOT / "models" / "voice"],
                        help="voice model directories (from emotion-export voice / train-voice)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the speech windows")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "voice_rtf.json")
    args = parser.parse_args(argv)
    artifacts = [p for d in args.models for p in sorted(d.glob("voice.*")) if p.suffix in (".tflite", ".onnx")]
    if not artifacts:
        print(f"no voice artifacts in {', '.join(map(str, args.models))}; run emotion-export voice first",
              file=sys.stderr)
        return 2
    windows = speech_windows()
    rows = [measure(path, windows, args.repeats) for path in artifacts]
    header = (f"{'artifact':<34} {'backend':<12} {'frontend':<12} {'feat ms':>8} {'model ms':>9} {'total ms':>9} "
              f"{'RTF':>8} {'RTF p95':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['artifact']:<34} {r['backend']:<12} {r['frontend']:<12} {r['features_ms_median']:>8.2f} "
              f"{r['model_ms_median']:>9.3f} {r['total_ms_median']:>9.2f} {r['rtf_total']:>8.4f} "
              f"{r['rtf_total_p95']:>8.4f}")
    verdict = all(r["below_target"] for r in rows)
    print(f"{'PASS' if verdict else 'FAIL'}  p95 RTF below {TARGET_RTF} for every artifact")
    result = {"target_rtf": TARGET_RTF, "all_below_target": verdict, "threads": 1,
              "machine": {"platform": platform.platform(), "processor": platform.machine(),
                          "cpus": os.cpu_count(), "python": platform.python_version()},
              "speech": "espeak-ng: " + ", ".join(f"{v}@{w}wpm" for v, w, _ in SPEECH), "rows": rows}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
