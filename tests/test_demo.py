"""The built-in demo on a device install: its photos ship with the package, its video is written atomically, it
finds the models without a models/ directory in the working directory, and it leaves no files behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import cli
from edge import demo
from edge.config import build_config
from edge.errors import EdgeError
from tests.mqtt_broker import Subscriber, broker_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
EXPORT_ONLY = ("skimage", "scipy", "tensorflow", "sklearn", "librosa")  # the export/test extras, absent on a device


def files_under(path: Path) -> list[str]:
    return sorted(str(item.relative_to(path)) for item in path.rglob("*"))


def command() -> list[str]:
    """`emotion-edge` as installed next to this interpreter (the console script a user runs)."""
    script = Path(sys.executable).parent / "emotion-edge"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edge.cli"]


def device_env(tmp_path: Path, **extra: str) -> tuple[dict, dict[str, Path]]:
    """An environment like a fresh device: the export-only packages unimportable, an empty home, an empty private
    temporary directory and an empty working directory."""
    stubs = tmp_path / "stubs"
    for name in EXPORT_ONLY:
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(
            f"raise ImportError('{name} is an export/test package, not installed on the device')\n")
    dirs = {name: tmp_path / name for name in ("cwd", "home", "tmp")}
    for path in dirs.values():
        path.mkdir(parents=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("EMOTION_EDGE_") and key not in ("PYTHONPATH", "XDG_CACHE_HOME")}
    env.update(PYTHONPATH=str(stubs), PYTHONDONTWRITEBYTECODE="1", HOME=str(dirs["home"]), TMPDIR=str(dirs["tmp"]),
               TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env, dirs


def skimage_frames(seconds: int = demo.SECONDS):
    """The demo frames as edge.demo built them before the photos were shipped: straight from scikit-image."""
    from skimage import data

    astronaut = data.astronaut()[30:260, 110:340]
    camera = np.stack([data.camera()] * 3, axis=-1)[70:260, 125:315]
    patches = [cv2.resize(astronaut, (220, 220)), cv2.resize(camera, (200, 200)),
               cv2.resize(astronaut[:, ::-1], (200, 200))]
    original = demo._photo_patches
    demo._photo_patches = lambda: patches
    try:
        yield from demo.frames(seconds=seconds)
    finally:
        demo._photo_patches = original


def test_shipped_photos_give_the_same_frames_as_scikit_image():
    """Every benchmark and test expectation was measured on frames cut from scikit-image's photos; the shipped
    patches must reproduce them bit for bit."""
    count = 0
    for shipped, original in zip(demo.frames(), skimage_frames(), strict=True):
        assert shipped.dtype == original.dtype == np.uint8
        assert np.array_equal(shipped, original), f"frame {count} differs"
        count += 1
    assert count == demo.FPS * demo.SECONDS


def test_lossless_demo_video_decodes_to_the_exact_frames(tmp_path):
    """`demo-video --lossless` gives FFV1 whose decoded frames are the demo's pixels, for cross-platform runs."""
    path = tmp_path / "lossless.avi"
    result = subprocess.run([*command(), "demo-video", str(path), "--lossless"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(path)
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").upper() == b"FFV1"
    count = 0
    for expected in demo.frames():
        ok, bgr = capture.read()
        assert ok, f"the video ends after {count} frames"
        assert np.array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), expected), f"frame {count} differs"
        count += 1
    assert not capture.read()[0]
    capture.release()
    assert files_under(tmp_path) == ["lossless.avi"]

    mjpg = tmp_path / "mjpg.avi"
    assert cli.main(["demo-video", str(mjpg)]) == 0
    assert int(cv2.VideoCapture(str(mjpg)).get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").upper() == b"MJPG"


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_write_leaves_no_temporary(tmp_path, monkeypatch, failure):
    real_frames = demo.frames

    def failing_frames(seconds=demo.SECONDS):
        yield from list(real_frames(seconds=1))[:5]
        raise failure

    monkeypatch.setattr(demo, "frames", failing_frames)
    with pytest.raises(type(failure)):
        demo.write_demo_video(tmp_path / "demo.avi")
    assert files_under(tmp_path) == []


def test_sigterm_while_writing_leaves_no_temporary(tmp_path):
    """systemd stopping the demo mid-write: the temporary beside the target is removed and nothing is renamed."""
    process = subprocess.Popen([*command(), "demo-video", str(tmp_path / "demo.avi"), "--lossless"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".demo.avi.*.tmp.avi")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(tmp_path.glob(".demo.avi.*.tmp.avi")), "the writer never started"
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("home", ["writable", "unusable"])
def test_demo_runs_without_export_packages_and_leaves_no_files(broker, face_models, tmp_path, home):
    """`emotion-edge run --demo` as on a device with only the runtime extra: no scikit-image, scipy, TensorFlow,
    scikit-learn or librosa, no models/ in the working directory (found through $EMOTION_EDGE_MODELS), events
    reach a real broker, and afterwards nothing is left but the cached video (none with an unusable home, as
    for a systemd service with ProtectHome=)."""
    env, dirs = device_env(tmp_path, EMOTION_EDGE_MODELS=str(face_models.parent))
    if home == "unusable":
        dirs["home"].rmdir()
        dirs["home"].write_text("not a directory\n")
    subscriber = Subscriber(broker.port, ["emotion_edge/demo/#"])
    result = subprocess.run([*command(), "run", "--demo", "--duration", "4", "--mqtt-host", "127.0.0.1",
                             "--mqtt-port", str(broker.port)], capture_output=True, text=True, env=env,
                            cwd=dirs["cwd"], timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ImportError" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"face models: {face_models}" in result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert printed and printed[0]["kind"] == "track_start"
    assert subscriber.wait_for(lambda msgs: len([m for m in msgs if m.topic.endswith("face/event")]) >= len(printed),
                               timeout=30)
    received = [json.loads(m.payload) for m in subscriber.on("emotion_edge/demo/face/event")]
    assert [event["seq"] for event in received] == [event["seq"] for event in printed]
    assert any(event["kind"] == "emotion" and event["label"] == "happy" for event in received)
    subscriber.close()

    assert files_under(dirs["cwd"]) == []
    assert files_under(dirs["tmp"]) == []
    if home == "writable":
        video = f".cache/emotion-edge/demo/{demo.DEMO_VIDEO_NAME}"
        assert files_under(dirs["home"]) == [".cache", ".cache/emotion-edge", ".cache/emotion-edge/demo", video]
    else:
        assert dirs["home"].read_text() == "not a directory\n"


def run_quietly(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env, dirs = device_env(tmp_path, **extra)
    result = subprocess.run([*command(), *args], capture_output=True, text=True, env=env, cwd=dirs["cwd"],
                            timeout=120)
    for path in dirs.values():
        assert files_under(path) == [], f"{path} was written to"
    return result


def test_missing_face_models_is_one_line_naming_the_places_and_the_fix(tmp_path):
    if (cli.DEVICE_MODELS / "face").exists():
        pytest.skip(f"this machine has a device install in {cli.DEVICE_MODELS}")
    result = run_quietly(tmp_path, "run", "--demo", "--duration", "1", EMOTION_EDGE_MODELS=str(tmp_path / "bundle"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("emotion-edge: error: no face models found")
    for place in (tmp_path / "bundle" / "face", cli.DEVICE_MODELS / "face", tmp_path / "cwd" / "models" / "face"):
        assert str(place) in line
    assert "`emotion-export face --out models/face`" in line

    result = run_quietly(tmp_path / "flag", "run", "--demo", "--models", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"emotion-edge: error: --models '{tmp_path / 'nowhere'}' is not a directory; run `emotion-export face --out "
        f"models/face` on a workstation and copy that directory here, or point --models at an exported model "
        f"directory"]


def test_missing_voice_models_names_the_export_command(tmp_path):
    if (cli.DEVICE_MODELS / "voice").exists():
        pytest.skip(f"this machine has a device install in {cli.DEVICE_MODELS}")
    config = tmp_path / "voice.toml"
    config.write_text('[face]\nenabled = false\n[voice]\nenabled = true\nsource = "file"\n'
                      '[audio_file]\npath = "speech.wav"\n')
    result = run_quietly(tmp_path / "run", "run", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("emotion-edge: error: no voice models found")
    assert str(tmp_path / "run" / "cwd" / "models" / "voice") in lines[0]
    assert "`emotion-export voice --out models/voice`" in lines[0]


def test_model_directory_resolution_order(tmp_path, monkeypatch):
    """--models, then a face.models other than the default, then $EMOTION_EDGE_MODELS/face, then the device
    install, then ./models/face; the first existing one wins and replaces face.models."""
    places = {name: tmp_path / name / "face" for name in ("flag", "config", "env", "device", "cwd/models")}
    for path in places.values():
        path.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(cli, "DEVICE_MODELS", tmp_path / "device")
    monkeypatch.setenv(cli.MODELS_ENV, str(tmp_path / "env"))

    def resolved(flag=None, configured=None) -> Path:
        config = build_config({"face": {"models": str(configured)}} if configured else {})
        cli.resolve_models(config, flag)
        return Path(config.face.models)

    assert resolved(places["flag"], places["config"]) == places["flag"]
    assert resolved(None, places["config"]) == places["config"]
    assert resolved(None, "models/face") == places["env"]  # the default value, even written out, searches
    assert resolved() == places["env"]
    monkeypatch.setenv(cli.MODELS_ENV, str(tmp_path / "empty"))
    assert resolved() == places["device"]
    places["device"].rmdir()
    assert resolved() == tmp_path / "cwd" / "models" / "face"
    places["cwd/models"].rmdir()
    with pytest.raises(EdgeError, match="no face models found"):
        resolved()
    with pytest.raises(EdgeError, match="face.models .* is not a directory"):
        resolved(None, tmp_path / "missing")
