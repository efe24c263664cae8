"""A user's own face model through the same export, and bad input failing clearly with nothing left behind."""

from __future__ import annotations

import json

import pytest

from edge.backends import open_model

from .conftest import CACHE, run_export


@pytest.fixture(scope="module")
def user_keras_model(tmp_path_factory):
    """The pretrained FER model re-saved in the native Keras format, as a user's own trained model."""
    import keras

    from export.sources import fetch

    path = tmp_path_factory.mktemp("user") / "my_fer.keras"
    keras.models.load_model(str(fetch("fer-emotion", CACHE / "sources")), compile=False).save(path)
    return path


def test_users_keras_model_gets_the_same_artifacts(user_keras_model, tmp_path):
    out = tmp_path / "mine"
    labels = "angry,disgust,fear,happy,sad,surprise,neutral"
    result = run_export("face", "--out", str(out), "--model", str(user_keras_model), "--labels", labels)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "parity.json").read_text())
    names = {row["artifact"] for row in report["artifacts"]}
    assert {"emotion.fp32.tflite", "emotion.fp16.tflite", "emotion.int8.tflite", "emotion.fp32.onnx",
            "emotion.int8.onnx"} <= names
    manifest = open_model(out / "emotion.int8.onnx").manifest
    assert manifest.model_id == "face-emotion-my_fer"
    assert manifest.data["source"]["file"] == "my_fer.keras"
    assert report["probe_astronaut_smile"]["emotion.fp32.tflite"] == "happy"
    assert "emotion.int8.tflite" in result.stdout and "top-1 agree" in result.stdout


def test_users_onnx_model_gets_onnx_artifacts(face_models, tmp_path):
    out = tmp_path / "from_onnx"
    labels = "angry,disgust,fear,happy,sad,surprise,neutral"
    result = run_export("face", "--out", str(out), "--model", str(face_models / "emotion.fp32.onnx"),
                        "--labels", labels)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "parity.json").read_text())
    rows = {row["artifact"]: row for row in report["artifacts"]}
    assert rows["emotion.fp32.onnx"]["top1_agreement"] == 1.0
    assert rows["emotion.int8.onnx"]["top1_agreement"] >= 0.96  # measured 96.47%, as for the default export


def _fails_cleanly(result, out, *needles):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    message = result.stderr.lower()
    for needle in needles:
        assert needle.lower() in message, result.stderr[-2000:]
    assert "traceback" not in message
    assert not out.exists(), "a failed export must not leave a model directory"
    assert not list(out.parent.glob(f".{out.name}.staging-*")), "staging directory left behind"


def test_missing_model_file(tmp_path):
    out = tmp_path / "out"
    result = run_export("face", "--out", str(out), "--model", str(tmp_path / "nope.h5"), "--labels", "a,b")
    _fails_cleanly(result, out, "not found")


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    out = tmp_path / "out"
    result = run_export("face", "--out", str(out), "--model", str(bad), "--labels", "a,b")
    _fails_cleanly(result, out, "cannot load keras model")


def test_wrong_input_shape(tmp_path):
    import keras

    path = tmp_path / "vector.keras"
    inputs = keras.Input((10,))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs)).save(path)
    out = tmp_path / "out"
    result = run_export("face", "--out", str(out), "--model", str(path), "--labels", "a,b,c")
    _fails_cleanly(result, out, "input shape", "(batch, height, width, channels)")


def test_label_count_must_match_outputs(user_keras_model, tmp_path):
    out = tmp_path / "out"
    result = run_export("face", "--out", str(out), "--model", str(user_keras_model), "--labels", "happy,sad")
    _fails_cleanly(result, out, "outputs", "2 labels")


def test_calibration_folder_without_faces(tmp_path):
    import cv2
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "coffee.png"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "rocket.jpg"), cv2.cvtColor(data.rocket(), cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    result = run_export("face", "--out", str(out), "--calibration-images", str(folder))
    _fails_cleanly(result, out, "no faces found")


def test_failed_export_keeps_the_previous_models(face_models, tmp_path):
    import shutil

    out = tmp_path / "face"
    shutil.copytree(face_models, out)
    before = sorted(p.name for p in out.iterdir())
    result = run_export("face", "--out", str(out), "--model", str(tmp_path / "missing.keras"), "--labels", "a")
    assert result.returncode == 2
    assert sorted(p.name for p in out.iterdir()) == before
    open_model(out / "emotion.int8.tflite")
