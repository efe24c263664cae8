"""`emotion-export train-voice` on a small espeak-ng set in RAVDESS naming, trained for real.

The classes differ audibly (speaking rate and pitch), the "actors" are different espeak voices,
and the held-out actors are never trained on: a model that scores far above chance on them has
learned the class difference, not the speakers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge.backends import open_model
from edge.voice.logmel import LogMelConfig, log_mel
from export.errors import ExportError
from export.train_voice import (TrainVoiceConfig, Recording, cut_windows, ravdess_recording, read_dataset,
                                split_by_speaker)
from tests.conftest import run_export
from tests.speech import SENTENCES, have_espeak

# RAVDESS emotion code -> (words per minute, espeak pitch): a real, audible class difference.
CLASSES = {"02": (105, 10), "03": (175, 55), "06": (260, 95)}
ACTORS = ("en-us", "en", "en+m3", "en-us+f3", "en+m7", "en-us+f2", "en+f4", "en-us+m1")
ARTIFACTS = ("voice.fp32.tflite", "voice.fp16.tflite", "voice.int8.tflite", "voice.fp32.onnx", "voice.int8.onnx")


def make_dataset(root: Path) -> Path:
    import subprocess

    for actor, voice in enumerate(ACTORS, start=1):
        for code, (wpm, pitch) in CLASSES.items():
            for statement, text in enumerate(SENTENCES, start=1):
                name = f"03-01-{code}-01-{statement:02d}-01-{actor:02d}.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w",
                                str(root / f"Actor_{actor:02d}" / name), text], check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    if not have_espeak():
        pytest.skip("espeak-ng is not installed")
    data = tmp_path_factory.mktemp("ravdess")
    for actor in range(1, len(ACTORS) + 1):
        (data / f"Actor_{actor:02d}").mkdir()
    make_dataset(data)
    out = tmp_path_factory.mktemp("models") / "voice-mine"
    result = run_export("train-voice", "--data", str(data), "--out", str(out), "--epochs", "20",
                        "--test-fraction", "0.25")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "confusion matrix" in result.stdout
    return data, out


def test_held_out_speakers_far_above_chance(trained):
    _, out = trained
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["windows"]["chance"] == pytest.approx(1 / 3, abs=1e-3)
    assert evaluation["windows"]["accuracy"] >= 0.75, evaluation
    assert evaluation["recordings"]["accuracy"] >= 0.8, evaluation
    counts = np.array(evaluation["windows"]["confusion_matrix"]["counts"])
    assert counts.shape == (3, 3) and counts.sum() == evaluation["windows"]["samples"]
    assert np.trace(counts) / counts.sum() == pytest.approx(evaluation["windows"]["accuracy"], abs=1e-4)


def test_report_plots_beside_the_json(trained, tmp_path):
    """confusion.svg shows the held-out counts of evaluation.json; learning_curve.svg has train and held-out
    accuracy for each of the 20 epochs; a real browser draws both."""
    from edge.reportplots import SERIES_COLOURS
    from tests.svg_check import assert_renders, by_class, matrix_counts, parse_svg

    _, out = trained
    evaluation = json.loads((out / "evaluation.json").read_text())
    confusion = parse_svg(out / "confusion.svg")
    assert matrix_counts(confusion) == evaluation["windows"]["confusion_matrix"]["counts"]
    assert [e.text for e in by_class(confusion, "text", "row-label")] == ["calm", "fearful", "happy"]
    curve = parse_svg(out / "learning_curve.svg")
    lines = by_class(curve, "polyline", "series")
    assert [len(line.get("points").split()) for line in lines] == [20, 20]
    per_epoch = json.loads((out / "parity.json").read_text())["training"]["per_epoch"]
    assert len(per_epoch["held_out_accuracy"]) == 20 and per_epoch["held_out_accuracy"][-1] >= 0.5
    fills = [e.get("fill") for e in by_class(confusion, "rect", "cell")]
    assert_renders(out / "confusion.svg", tmp_path / "confusion.png", [fills[0]])
    assert_renders(out / "learning_curve.svg", tmp_path / "curve.png", list(SERIES_COLOURS[:2]))


def test_speaker_split_has_no_overlap(trained):
    _, out = trained
    split = json.loads((out / "evaluation.json").read_text())["split"]
    train, test = set(split["train_speakers"]), set(split["test_speakers"])
    assert not train & test
    assert train | test == {f"actor{i:02d}" for i in range(1, len(ACTORS) + 1)}
    assert len(test) == 2  # ceil(8 * 0.25)


INT8_FLOOR = {"voice.int8.tflite": 0.95, "voice.int8.onnx": 0.95}  # both measured 100% with the locked toolchain


def test_artifacts_agree_with_trained_model(trained):
    import keras

    data, out = trained
    manifest = json.loads((out / "voice.fp32.tflite.json").read_text())
    config = LogMelConfig.from_manifest(manifest["preprocessing"])
    assert manifest["labels"] == ["calm", "fearful", "happy"]  # sorted labels found in the data
    assert manifest["inputs"][0]["shape"] == [1, *config.shape]
    test_speakers = json.loads((out / "evaluation.json").read_text())["split"]["test_speakers"]
    windows = []
    for path in sorted(data.rglob("*.wav")):
        if ravdess_recording(path).speaker in test_speakers:
            audio, rate = soundfile.read(str(path), dtype="float32")
            assert rate == config.rate
            windows += [log_mel(w, config) for w in cut_windows(audio, rate, config.window_s, 1.0)]
    batch = np.stack(windows)
    reference = keras.models.load_model(out / "voice.keras").predict(batch, verbose=0)
    for name in ARTIFACTS:
        assert (out / name).is_file() and (out / (name + ".json")).is_file()
        model = open_model(out / name)
        probs = model.predict(batch)
        agreement = float(np.mean(probs.argmax(1) == reference.argmax(1)))
        error = float(np.abs(probs - reference).mean())
        if ".int8." in name:
            assert agreement >= INT8_FLOOR[name] and error < 0.08, (name, agreement, error)
        else:
            assert agreement >= 0.99 and error < 2e-3, (name, agreement, error)
    parity = json.loads((out / "parity.json").read_text())
    assert {row["artifact"] for row in parity["artifacts"]} == set(ARTIFACTS)


def test_ravdess_names_and_csv(tmp_path):
    assert ravdess_recording(Path("03-01-06-01-02-01-12.wav")) == Recording(
        Path("03-01-06-01-02-01-12.wav"), "fearful", "actor12")
    assert ravdess_recording(Path("notes.wav")) is None
    assert ravdess_recording(Path("03-01-09-01-02-01-12.wav")) is None
    (tmp_path / "list.csv").write_text("path,label,speaker\na.wav,Happy,bob\nsub/b.wav,calm,ann\n")
    recordings, how = read_dataset(tmp_path / "list.csv")
    assert how == "speaker column"
    assert recordings[0] == Recording(tmp_path / "a.wav", "happy", "bob")
    assert recordings[1].path == tmp_path / "sub" / "b.wav"
    (tmp_path / "bad.csv").write_text("file,emotion\na.wav,happy\n")
    with pytest.raises(ExportError, match="path,label"):
        read_dataset(tmp_path / "bad.csv")
    with pytest.raises(ExportError, match="does not exist"):
        read_dataset(tmp_path / "missing")


def test_split_by_speaker():
    recordings = [Recording(Path(f"{s}{i}.wav"), "calm", s) for s in "abcdefgh" for i in range(3)]
    train, test = split_by_speaker(recordings, 0.25, seed=1)
    assert len({r.speaker for r in test}) == 2 and len(train) + len(test) == len(recordings)
    assert not {r.speaker for r in train} & {r.speaker for r in test}
    with pytest.raises(ExportError, match="one speaker"):
        split_by_speaker(recordings[:3], 0.25, seed=0)


@pytest.mark.parametrize("change, key", [
    ({"epochs": 0}, "train_voice.epochs"), ({"test_fraction": 1.0}, "train_voice.test_fraction"),
    ({"labels": ["calm", "bored"]}, "train_voice.labels"), ({"logmel": LogMelConfig(n_fft=1000)}, "voice_logmel.n_fft"),
])
def test_config_errors_name_the_key(change, key):
    with pytest.raises(Exception, match=key):
        TrainVoiceConfig(**change).validate()


def test_trained_model_runs_in_the_device_pipeline(trained):
    """The log-mel model goes through the same VoiceAnalyzer as the pretrained one, with the same numbers."""
    import keras

    from edge.sources.audio import AudioFileConfig, AudioFileSource
    from edge.voice.analyzer import VoiceAnalyzer

    data, out = trained
    reference_model = keras.models.load_model(out / "voice.keras")
    pipeline = VoiceAnalyzer(open_model(out / "voice.fp32.tflite"))
    assert pipeline.logmel is not None
    test_speakers = json.loads((out / "evaluation.json").read_text())["split"]["test_speakers"]
    path = next(p for p in sorted(data.rglob("*.wav")) if ravdess_recording(p).speaker in test_speakers)
    source = AudioFileSource(AudioFileConfig(path=str(path), realtime=False, window_s=2.5, hop_s=1.0))
    source.start()
    checked = 0
    try:
        while True:
            window = source.read(timeout=5)
            if window is None:
                break
            features, verdict, reason = pipeline.analyse(window)
            if features is None:
                continue
            expected = reference_model.predict(features[None], verbose=0)[0]
            actual = pipeline.model.predict(features[None])[0]
            assert np.abs(actual - expected).max() < 1e-4
            checked += 1
    finally:
        source.stop()
    assert checked >= 1
