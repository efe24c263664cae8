"""ONNX Runtime execution providers from the config, and where compiled engines are cached.

The providers are tested with the real CPU-only onnxruntime installed here: a Jetson's list (TensorRT, CUDA,
CPU) must run on CPU with one warning saying why, and report CPU in the health topic. TensorRT itself cannot
run here (no GPU, not installable), so for it only the cache-path choice is tested, which is plain code.
"""

from __future__ import annotations

import json
import os

import onnxruntime as ort
import pytest

from edge.backends import open_model
from edge.backends.base import cache_directory, writable_cache
from edge.backends.onnxrt import KNOWN_PROVIDERS, MISSING_REASON, session_providers
from edge.backends.tensorrt import engine_path
from edge.config import DeviceConfig, build_config
from edge.demo import build_demo_video
from edge.errors import EdgeError
from edge.face.analyzer import FaceAnalyzer
from edge.face.config import FaceConfig
from edge.manifest import load_manifest
from tests.mqtt_broker import Subscriber, broker_fixture  # noqa: F401

from .runtime_helpers import finish, run_cli, runtime_config, start_runtime, toml_text

JETSON = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
PREFIX = "emotion_edge/testdev"


def test_every_provider_this_onnxruntime_knows_is_accepted():
    assert set(ort.get_all_providers()) <= set(KNOWN_PROVIDERS)


@pytest.mark.parametrize("section", ["face", "voice", "eeg"])
def test_a_misspelt_provider_is_a_config_error_naming_the_key(section):
    with pytest.raises(EdgeError) as error:
        build_config({section: {"providers": ["CUDAExecutionProvidr", "CPUExecutionProvider"]}})
    message = str(error.value)
    assert message.startswith(f"{section}.providers: 'CUDAExecutionProvidr' is not an ONNX Runtime execution "
                              "provider; did you mean 'CUDAExecutionProvider'?"), message
    with pytest.raises(EdgeError, match=f"{section}.providers is empty"):
        build_config({section: {"providers": []}})


def test_a_misspelt_provider_stops_the_cli_with_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(toml_text({"face": {"providers": ["cuda"]}}))
    result = run_cli("run", "--config", str(path), timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [line for line in result.stderr.splitlines() if "face.providers: 'cuda'" in line], result.stderr
    assert len(errors) == 1 and errors[0].startswith("emotion-edge: error: face.providers")


def test_defaults_are_cpu_and_the_jetson_list_is_valid():
    assert FaceConfig().providers == ("CPUExecutionProvider",)
    assert build_config({"face": {"providers": JETSON}}).face.providers == tuple(JETSON)


def test_jetson_provider_list_runs_on_cpu_here(face_models):
    model = open_model(face_models / "emotion.int8.onnx", "onnxruntime", providers=JETSON)
    assert "CUDAExecutionProvider" not in ort.get_available_providers()  # this machine's build is CPU-only
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    assert model.describe() == {"backend": "onnxruntime", "provider": "CPUExecutionProvider",
                                "artifact": "emotion.int8.onnx"}


def test_litert_reports_the_same_keys(face_models):
    pipeline = FaceAnalyzer(FaceConfig(models=str(face_models)))
    assert pipeline.model.describe() == {"backend": "litert", "provider": "CPU", "artifact": "emotion.int8.tflite"}


def test_runtime_logs_the_fallback_once_and_reports_cpu_in_health(broker, face_models, tmp_path):
    """A Jetson profile's provider list on this CPU-only onnxruntime: the run works on CPU, one warning names
    the skipped providers and the fix, and the health topic says which provider runs each model."""
    video = build_demo_video(tmp_path / "demo.avi")
    subscriber = Subscriber(broker.port, [f"{PREFIX}/health"])
    config = runtime_config(tmp_path, face_models, video, broker.port,
                            face={"emotion": "emotion.int8.onnx", "detector": "detector.fp32.onnx",
                                  "backend": "onnxruntime", "providers": JETSON},
                            device={"cache_dir": str(tmp_path / "cache")})
    process = start_runtime(tmp_path, config, "--duration", "8")
    stdout, stderr = finish(process)
    assert process.returncode == 0, stderr[-3000:]
    warnings = [line for line in stderr.splitlines() if " WARNING " in line and "ExecutionProvider" in line]
    assert len(warnings) == 1, stderr[-3000:]  # two models load, one warning
    assert "TensorrtExecutionProvider, CUDAExecutionProvider skipped" in warnings[0]
    assert MISSING_REASON in warnings[0]
    for artifact in ("detector.fp32.onnx", "emotion.int8.onnx"):
        assert f"{artifact} runs on onnxruntime (CPUExecutionProvider)" in stderr
    assert subscriber.wait_for(lambda msgs: bool(msgs), timeout=10)
    health = json.loads(subscriber.on(f"{PREFIX}/health")[-1].payload)
    subscriber.close()
    assert health["face"]["models"] == {
        "face.detector": {"backend": "onnxruntime", "provider": "CPUExecutionProvider",
                          "artifact": "detector.fp32.onnx"},
        "face.emotion": {"backend": "onnxruntime", "provider": "CPUExecutionProvider",
                         "artifact": "emotion.int8.onnx"},
    }


def test_tensorrt_provider_caches_engines_in_the_cache_directory(tmp_path):
    cache = tmp_path / "cache"
    chosen = session_providers(JETSON, available=JETSON, cache_dir=cache)
    name, options = chosen[0]
    assert name == "TensorrtExecutionProvider" and chosen[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options["trt_engine_cache_enable"] and options["trt_fp16_enable"]
    assert options["trt_engine_cache_path"] == str(cache / "onnxruntime-trt") and (cache / "onnxruntime-trt").is_dir()
    assert "trt_int8_enable" not in options  # QDQ artifacts are explicitly quantized
    assert session_providers(JETSON, available=["CPUExecutionProvider"], cache_dir=cache) == ["CPUExecutionProvider"]


def test_cache_directory_prefers_config_then_systemd_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    assert cache_directory() == tmp_path / "home" / ".cache" / "emotion-edge"
    assert DeviceConfig().cache_path == tmp_path / "home" / ".cache" / "emotion-edge"
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/emotion-edge:/var/cache/other")
    assert cache_directory("") == cache_directory(None) == DeviceConfig().cache_path
    assert cache_directory() == type(tmp_path)("/var/cache/emotion-edge")
    assert cache_directory("~/engines") == tmp_path / "home" / "engines"
    assert DeviceConfig(cache_dir=str(tmp_path / "mine")).cache_path == tmp_path / "mine"


def test_tensorrt_engine_is_cached_outside_the_model_directory(face_models, tmp_path, monkeypatch):
    """Under systemd's ProtectSystem=strict the model directory in /opt is read-only: the engine goes to the cache."""
    manifest = load_manifest(face_models / "emotion.int8.onnx")
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "systemd-cache"))
    path = engine_path(manifest, "10.3.0")
    assert path.parent == tmp_path / "systemd-cache"
    assert path.name == f"emotion.int8.{manifest.sha256[:12]}.trt10.3.0.engine"
    assert engine_path(manifest, "10.3.0", tmp_path / "configured").parent == tmp_path / "configured"


def test_unwritable_cache_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(EdgeError, match="set device.cache_dir to a writable directory"):
        writable_cache(blocker / "cache")
    assert writable_cache(tmp_path / "new" / "cache").is_dir()
    assert os.access(tmp_path / "new" / "cache", os.W_OK)
