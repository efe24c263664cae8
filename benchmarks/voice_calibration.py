"""Calibrate voice.label_threshold: the top probability above which the voice model's label is shown.

The only "no emotion" speech available offline is espeak-ng's: flat synthetic speech. A label shown
on it is a false label, so the threshold is the smallest top probability that at most `--max-false`
(default 5 %) of neutral windows exceed. The calibration set is built from voices, variants, rates
and pitches that tests/speech.py (the tests' held-out voices) does not use, cut into the device's
2.5 s windows with a 1 s hop, and only windows the VAD passes count. The script prints the
distribution of the model's top probability and its label counts on that speech, and the
threshold; a threshold of 1.0 means no value below 1 keeps neutral speech unlabelled, i.e. the model
must never label (its probabilities are still published).

What this cannot tell: how often the model is right when it does exceed the threshold on real
emotional speech (no labelled emotional speech is available here), and whether real neutral
speech behaves like synthetic speech.

Usage: python benchmarks/voice_calibration.py [--model models/voice/voice.fp16.tflite] [--max-false 0.05]
Writes benchmarks/results/voice_calibration.json and prints a table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import soundfile  # noqa: E402

from edge.backends import open_model  # noqa: E402
from edge.sources.audio import AudioWindow  # noqa: E402
from edge.voice.analyzer import VoiceAnalyzer, VoiceConfig  # noqa: E402
from results_file import write_result  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

# Not in tests/speech.py's VOICES: the tests check the threshold on voices it was not chosen on.
VOICES = ("en-gb-x-rp", "en-us-nyc+adam", "en-029+linda", "en-gb-scotland+max", "nl", "it+klatt", "sv", "pl+steph")
SETTINGS = ((125, 35), (165, 50), (205, 70))  # (words per minute, pitch 0-99)
TEXTS = ("The meeting has been moved to Thursday afternoon at three o'clock in the small room.",
         "Turn left at the second traffic light and the library is on your right hand side.")


def neutral_windows(directory: Path):
    for voice in VOICES:
        for wpm, pitch in SETTINGS:
            for index, text in enumerate(TEXTS):
                path = directory / "clip.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(path), text],
                               check=True, capture_output=True, timeout=60)
                samples, rate = soundfile.read(str(path), dtype="float32")
                n = int(2.5 * rate)
                for start in range(0, len(samples) - n + 1, rate):
                    yield voice, AudioWindow(samples[start:start + n], rate, start, 0.0, 0.0, "calibration")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "voice" / "voice.fp16.tflite"))
    parser.add_argument("--max-false", type=float, default=0.05, help="share of neutral windows allowed a label")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "voice_calibration.json")
    args = parser.parse_args(argv)
    if not Path(args.model).is_file():
        print(f"no voice model at {args.model}; run emotion-export voice --out models/voice or pass --model",
              file=sys.stderr)
        return 2
    model = open_model(Path(args.model), "auto", 1)
    analyzer = VoiceAnalyzer(model, config=VoiceConfig(label_threshold=1.0))
    tops, labels, voices = [], Counter(), set()
    with tempfile.TemporaryDirectory() as tmp:
        for voice, window in neutral_windows(Path(tmp)):
            analyzer.reset()
            (obs,) = analyzer.process(window)
            if obs.probabilities is None:
                continue
            best = max(obs.probabilities, key=obs.probabilities.get)
            tops.append(obs.probabilities[best])
            labels[best] += 1
            voices.add(voice)
    top = np.asarray(tops)
    # Smallest threshold t with mean(top > t) <= max_false: the (1 - max_false) quantile, "higher" method.
    threshold = float(np.quantile(top, 1.0 - args.max_false, method="higher"))
    false_share = float(np.mean(top > threshold))
    quantiles = {f"p{q}": float(np.percentile(top, q)) for q in (5, 25, 50, 75, 95)}
    print(f"{len(top)} neutral windows from {len(voices)} voices x {len(SETTINGS)} rate/pitch settings")
    print(f"{'statistic':<24} {'top probability':>16}")
    print("-" * 41)
    for key, value in {**quantiles, "min": float(top.min()), "share == 1.0": float(np.mean(top >= 1.0))}.items():
        print(f"{key:<24} {value:>16.6f}")
    print("model's argmax on neutral speech:", dict(labels.most_common()))
    print(f"threshold (at most {args.max_false:.0%} of neutral windows labelled): {threshold:.6f} "
          f"-> {false_share:.1%} labelled")
    result = {"model": Path(args.model).name, "max_false": args.max_false, "threshold": threshold,
              "labelled_share_at_threshold": false_share, "windows": int(len(top)), "voices": sorted(voices),
              "settings_wpm_pitch": SETTINGS, "top_probability": quantiles, "argmax_counts": dict(labels)}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
