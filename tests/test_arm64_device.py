"""The Raspberry Pi bundle on arm64: installed offline in an emulated Debian bookworm arm64 root (qemu-user), run
as its service user on a lossless demo video, a WAV and a simulated Muse, publishing to a mosquitto on the host.

Its face and voice events must be the x86 run's on the same decoded input (a lossless video: MJPG decodes
differently on ARM). Needs root (chroot, mounts); in CI it always runs. Emulated timings mean nothing here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.mqtt_broker import broker_fixture  # noqa: F401
from tests.mqtt_broker import Subscriber
from tests.runtime_helpers import printed_events, toml_text

from .conftest import ROOT, run_export

IN_CI = os.environ.get("CI") == "true"
SECONDS = 150  # long enough for qemu to finish the 12 s video and the speech, with EEG events throughout

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not IN_CI, reason="the arm64 smoke test needs root (chroot and mounts); CI runs it")


def _speech(path: Path) -> Path:
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), "Good morning. The weather is lovely today. "
                    "Could you please turn the music up a little? Thank you, that is much better."], check=True)
    return path


def _config(work: Path, models: Path, port: int, device: str) -> dict:
    return {
        "device": {"id": device, "data_dir": str(work / f"data-{device}"), "health_interval_s": 5.0},
        "camera": {"source": str(work / "faces.avi"), "on_end": "stop", "realtime": False},
        "face": {"models": str(models / "face")},
        # label_threshold 0: the model names its label on every window (by default it never does on plain speech),
        # so the voice label sequences of both architectures can be compared
        "voice": {"enabled": True, "source": "file", "models": str(models / "voice"), "label_threshold": 0.0},
        "audio_file": {"path": str(work / "speech.wav"), "realtime": False},
        "eeg": {"enabled": True},
        "lsl": {"name": f"muse-{device}"},
        "mqtt": {"host": "127.0.0.1", "port": port},
    }


def _summary(events: list[dict], modality: str) -> list[tuple]:
    return [(e["kind"], e["track_id"], e["label"]) for e in events if e["modality"] == modality]


def test_pi_bundle_runs_face_voice_and_eeg_on_arm64_as_the_service_user(face_models, voice_models, broker, capsys):
    assert os.geteuid() == 0, "CI must run the arm64 smoke test as root"
    # Under /tmp (bind-mounted into the arm64 root) and readable by the service user.
    work = Path(tempfile.mkdtemp(prefix="arm64-smoke-", dir="/tmp"))
    try:
        work.chmod(0o777)
        models = work / "models"
        shutil.copytree(face_models, models / "face")
        shutil.copytree(voice_models, models / "voice")
        video = subprocess.run([sys.executable, "-m", "edge.cli", "demo-video", "--lossless", str(work / "faces.avi")],
                               capture_output=True, text=True, cwd=ROOT)
        assert video.returncode == 0, video.stderr
        _speech(work / "speech.wav")
        result = run_export("bundle", "--target", "pi-aarch64", "--face-models", str(models / "face"),
                            "--voice-models", str(models / "voice"), "--out", str(work / "dist"))
        assert result.returncode == 0, result.stderr[-3000:]
        bundle = next((work / "dist").glob("emotion-edge-*-pi-aarch64.tar.gz"))
        for path in work.rglob("*"):
            path.chmod(0o777 if path.is_dir() else 0o644)

        # x86, in this process's venv, on the same inputs.
        (work / "x86.toml").write_text(toml_text(_config(work, models, broker.port, "x86")))
        muse = subprocess.Popen([sys.executable, "-m", "edge.cli", "simulate-muse", "--name", "muse-x86",
                                 "--duration", "90"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            x86 = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(work / "x86.toml"),
                                  "--print-events", "--duration", "20"], capture_output=True, text=True, cwd=ROOT,
                                 timeout=300)
        finally:
            muse.kill()
            muse.wait()
        assert x86.returncode == 0, x86.stderr[-3000:]
        x86_events = printed_events(x86.stdout)

        # arm64: the installed bundle, its models, its liblsl, as the service user.
        config = _config(work, Path("/opt/emotion-edge/models"), broker.port, "arm64")
        (work / "arm64.toml").write_text(toml_text(config))
        (work / "arm64.toml").chmod(0o644)
        hub = Subscriber(broker.port, ["emotion_edge/arm64/+/event"])
        try:
            smoke = subprocess.run(["bash", str(ROOT / ".ci" / "arm64_smoke.sh"), str(bundle), str(work),
                                    str(SECONDS)], capture_output=True, text=True, timeout=1800)
            assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-3000:]
            hub.wait_for(lambda messages: len(messages) >= 1, timeout=10)
            received = [json.loads(m.payload) for m in hub.messages]
        finally:
            hub.close()
        arm_events = printed_events((work / "arm64.events.jsonl").read_text())
        log = (work / "arm64.log").read_text()

        assert re.search(r"liblsl \S+ loaded from /opt/emotion-edge/lib/liblsl\.so", log), log[-3000:]
        for modality in ("face", "voice", "eeg"):
            assert any(e["modality"] == modality for e in arm_events), (modality, log[-3000:])
            assert any(e["modality"] == modality for e in received), (modality, "not at the broker")
        assert {e["seq"] for e in received} <= {e["seq"] for e in arm_events}
        face_x86, face_arm = _summary(x86_events, "face"), _summary(arm_events, "face")
        assert face_arm == face_x86, (face_x86, face_arm)
        assert len({track for kind, track, _ in face_arm if kind == "track_start"}) >= 3
        assert _summary(arm_events, "voice") == _summary(x86_events, "voice")
        counts = {m: sum(e["modality"] == m for e in arm_events) for m in ("face", "voice", "eeg")}
        with capsys.disabled():
            print(f"\narm64 smoke: {counts} events on arm64 (face and voice equal to x86), {len(received)} at the "
                  f"broker, bundle {bundle.stat().st_size / 1e6:.1f} MB; {log.count('liblsl')} liblsl log line(s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
