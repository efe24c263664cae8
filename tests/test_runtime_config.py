"""Config and model errors: clear messages naming the key, non-zero exit, no traceback."""

from __future__ import annotations

import shutil

import pytest

from edge.config import build_config, defaults_toml, tomllib
from edge.errors import EdgeError

from .conftest import ROOT
from .runtime_helpers import run_cli, toml_text


def _fails(tmp_path, config: dict | str, *needles: str):
    path = tmp_path / "bad.toml"
    path.write_text(config if isinstance(config, str) else toml_text(config))
    result = run_cli("run", "--config", str(path), timeout=60)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    for needle in needles:
        assert needle in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_unknown_key_is_named(tmp_path):
    _fails(tmp_path, {"face": {"modles": "x"}}, "unknown key face.modles")


def test_unknown_section_is_named(tmp_path):
    _fails(tmp_path, {"cameras": {"source": "0"}}, "unknown section [cameras]")


def test_wrong_type_is_named(tmp_path):
    _fails(tmp_path, {"camera": {"fps": "fast"}}, "camera.fps must be a number")


def test_bad_value_is_named(tmp_path):
    _fails(tmp_path, {"face": {"max_faces": 0}}, "face.max_faces")
    _fails(tmp_path, {"mqtt": {"port": 70000}}, "mqtt.port")
    _fails(tmp_path, {"device": {"id": "has space"}}, "device.id")


def test_invalid_toml(tmp_path):
    _fails(tmp_path, "[face\nmodels = ", "not valid TOML")


def test_missing_config_file(tmp_path):
    result = run_cli("run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "cannot read config file" in result.stderr


def test_missing_model_directory(tmp_path):
    _fails(tmp_path, {"face": {"models": str(tmp_path / "none")}, "device": {"data_dir": str(tmp_path / "d")}},
           "face.models", "emotion-export face")


def test_corrupt_model_is_refused(tmp_path, face_models):
    models = tmp_path / "face"
    shutil.copytree(face_models, models)
    data = bytearray((models / "emotion.int8.tflite").read_bytes())
    data[-100] ^= 0x55
    (models / "emotion.int8.tflite").write_bytes(bytes(data))
    _fails(tmp_path, {"face": {"models": str(models)}, "device": {"data_dir": str(tmp_path / "d")}},
           "does not match its manifest")


def test_wrong_model_kind_is_refused(tmp_path, face_models):
    _fails(tmp_path, {"face": {"models": str(face_models), "emotion": "detector.fp32.tflite"},
                      "device": {"data_dir": str(tmp_path / "d")}}, "face_detection model, not face_emotion")


def test_backend_must_match_artifact(tmp_path, face_models):
    _fails(tmp_path, {"face": {"models": str(face_models), "backend": "onnxruntime"},
                      "device": {"data_dir": str(tmp_path / "d")}}, "runs onnx artifacts")


def test_defaults_are_a_complete_valid_config():
    text = defaults_toml()
    config = build_config(tomllib.loads(text))
    assert config.face.emotion == "emotion.int8.tflite"
    for section in ("device", "camera", "face", "tracker", "smoothing", "mqtt"):
        assert f"[{section}]" in text
    undocumented = [line for line in text.splitlines()[2:] if "=" in line and not line.startswith("#")]
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#") and index > 2:
            assert lines[index - 1].startswith("#"), f"undocumented option: {line}"
    assert undocumented


def test_check_config_command(tmp_path, face_models):
    path = tmp_path / "ok.toml"
    path.write_text(defaults_toml().replace('models = "models/face"', f'models = "{face_models}"', 1))
    result = run_cli("check-config", str(path))
    assert result.returncode == 0 and "OK" in result.stdout


def test_config_errors_in_process():
    with pytest.raises(EdgeError, match="tracker.min_hits"):
        build_config({"tracker": {"min_hits": 0}})
    with pytest.raises(EdgeError, match="smoothing.alpha"):
        build_config({"smoothing": {"alpha": 2.0}})


def test_face_threads_auto_leaves_a_core_for_the_camera():
    import os

    from edge.face.config import FaceConfig

    assert FaceConfig().threads == 0
    assert FaceConfig().inference_threads() == max(1, min(2, (os.cpu_count() or 1) - 1))
    assert FaceConfig(threads=3).inference_threads() == 3
    with pytest.raises(EdgeError, match="face.threads"):
        FaceConfig(threads=-1).validate()


@pytest.mark.parametrize("profile", sorted((ROOT / "firmware_config" / "profiles").glob("*.toml")),
                         ids=lambda path: path.stem)
def test_shipped_profiles_open_their_face_models(face_models, profile):
    """Each device profile's face artifacts and backend fit together (the models path points at this export)."""
    from edge.config import load_config
    from edge.face.analyzer import FaceAnalyzer

    config = load_config(profile)
    config.face.models = str(face_models)
    pipeline = FaceAnalyzer(config.face)
    assert pipeline.detector.model.manifest.data["task"] == "face_detection"
    assert pipeline.model.manifest.data["task"] == "face_emotion"
    from skimage import data

    assert len(pipeline.detector.detect(data.astronaut())) == 1


def test_check_config_never_prints_the_broker_password(tmp_path, face_models):
    path = tmp_path / "secret.toml"
    face = {"models": str(face_models)}  # check-config needs the model directory to exist
    path.write_text(toml_text({"face": face, "mqtt": {"username": "kiosk", "password": "hunter2-secret"}}))
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr
    assert "username='kiosk'" in result.stdout and "password='<set>'" in result.stdout
    path.write_text(toml_text({"face": face, "mqtt": {"username": "kiosk"}}))
    assert "password=''" in run_cli("check-config", str(path)).stdout
