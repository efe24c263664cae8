"""Bad input found before the device runs: one line naming the input and the fix, exit 2, no traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from edge.backends import open_model
from edge.config import build_config
from edge.errors import EdgeError

from .runtime_helpers import run_cli, toml_text


def _check_config(tmp_path, config: dict | bytes) -> tuple[int, str]:
    path = tmp_path / "config.toml"
    path.write_bytes(config if isinstance(config, bytes) else toml_text(config).encode())
    result = run_cli("check-config", str(path), timeout=60)
    return result.returncode, result.stderr


def _one_line_error(tmp_path, config: dict | bytes, *needles: str) -> str:
    code, stderr = _check_config(tmp_path, config)
    assert code == 2, (code, stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emotion-edge: error: "), stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("section, key, value", [
    ("device", "health_interval_s", "nan"), ("camera", "fps", "inf"), ("mqtt", "connect_timeout_s", "-inf"),
    ("smoothing", "alpha", "nan"),
])
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, section, key, value):
    text = f"[{section}]\n{key} = {value}\n".encode()
    _one_line_error(tmp_path, text, f"{section}.{key} must be a finite number")


@pytest.mark.parametrize("prefix", ["$SYS", "$share/x", "a//b", "/a", "a/", "a/+", "a/#", "a b", "a\u0000b",
                                    "emotion_edge/kitchen", "site/emotion_edge/kitchen", "x/face", "x/health"])
def test_bad_topic_prefixes_are_refused(prefix):
    with pytest.raises(EdgeError, match="^mqtt.topic_prefix ") as caught:
        build_config({"mqtt": {"topic_prefix": prefix}})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("prefix", ["emotion_edge", "site1/emotion_edge", "lab-2/edge_devices", "a"])
def test_good_topic_prefixes_are_taken(prefix):
    assert build_config({"mqtt": {"topic_prefix": prefix}}).mqtt.topic_prefix == prefix


def test_prefix_inside_another_devices_subtree_fails_from_the_cli(tmp_path):
    _one_line_error(tmp_path, {"mqtt": {"topic_prefix": "emotion_edge/kitchen"}},
                    "mqtt.topic_prefix 'emotion_edge/kitchen'", "another device", "site1/emotion_edge")
    _one_line_error(tmp_path, {"mqtt": {"discovery_prefix": "$SYS"}}, "mqtt.discovery_prefix '$SYS'")
    _one_line_error(tmp_path, {"device": {"id": "face"}}, "device.id 'face'", "choose another id")


def test_non_utf8_config_names_the_file_and_byte(tmp_path):
    line = _one_line_error(tmp_path, b'[device]\nid = "caf\xe9"\n', "is not UTF-8 text",
                           "byte offset 18, line 2, is 0xe9", "save it as UTF-8")
    assert str(tmp_path / "config.toml") in line


def test_unreadable_config_is_one_line(tmp_path):
    result = run_cli("check-config", str(tmp_path))  # a directory: read fails even for root
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot read config file {tmp_path}" in lines[0], result.stderr


def test_check_config_fails_for_a_missing_model_directory(tmp_path, face_models):
    missing = tmp_path / "no-models"
    _one_line_error(tmp_path, {"face": {"models": str(missing)}}, f"face.models '{missing}' is not a directory",
                    "emotion-export face")
    voice_only = {"face": {"enabled": False}, "voice": {"enabled": True, "models": str(missing)}}
    _one_line_error(tmp_path, voice_only, f"voice.models '{missing}' is not a directory")
    code, stderr = _check_config(tmp_path, {"face": {"models": str(face_models)}})
    assert code == 0, stderr[-2000:]


@pytest.mark.parametrize("artifact", ["emotion.int8.tflite", "emotion.fp32.onnx"])
def test_manifest_input_shape_must_match_the_model(tmp_path, face_models, artifact):
    models = tmp_path / "face"
    shutil.copytree(face_models, models)
    manifest_path = models / f"{artifact}.json"
    manifest = json.loads(manifest_path.read_text())
    real = manifest["inputs"][0]["shape"]
    manifest["inputs"][0]["shape"] = [1, 48, 48, 1]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(EdgeError) as caught:
        open_model(models / artifact)
    message = str(caught.value)
    assert "\n" not in message
    assert str(models / artifact) in message and f"takes input shape {tuple(real)}" in message
    assert "manifest" in message and "(1, 48, 48, 1)" in message and "re-export with emotion-export" in message


def test_manifest_shape_mismatch_stops_the_runtime_with_one_line(tmp_path, face_models):
    from edge.demo import build_demo_video

    models = tmp_path / "face"
    shutil.copytree(face_models, models)
    manifest_path = models / "emotion.int8.tflite.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["inputs"][0]["shape"] = [1, 48, 48, 1]
    manifest_path.write_text(json.dumps(manifest))
    path = tmp_path / "run.toml"
    path.write_text(toml_text({"device": {"data_dir": str(tmp_path / "data")},
                               "camera": {"source": str(build_demo_video(tmp_path / "demo.avi"))},
                               "face": {"models": str(models)}}))
    result = run_cli("run", "--config", str(path), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "re-export with emotion-export" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
