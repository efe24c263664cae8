"""Optional dependencies stay optional: configuration commands work without any camera, audio, LSL or model
runtime library, and a modality's libraries are imported only when it is enabled."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT

BLOCKED = ("cv2", "sounddevice", "pylsl", "onnxruntime", "ai_edge_litert", "tflite_runtime", "paho", "soxr")

RUN_BLOCKED = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
from edge.cli import main
sys.exit(main({argv!r}))
"""


def run_blocked(argv: list[str], blocked=BLOCKED) -> subprocess.CompletedProcess:
    code = RUN_BLOCKED.format(blocked=blocked, argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_defaults_and_check_config_need_no_optional_library(tmp_path):
    defaults = run_blocked(["defaults"])
    assert defaults.returncode == 0, defaults.stderr[-2000:]
    assert "[camera]" in defaults.stdout and "[fusion]" in defaults.stdout
    path = tmp_path / "config.toml"
    (tmp_path / "face").mkdir()
    path.write_text(defaults.stdout.replace('models = "models/face"', f'models = "{tmp_path / "face"}"'))
    checked = run_blocked(["check-config", str(path)])
    assert checked.returncode == 0, checked.stderr[-2000:]


def test_a_disabled_modality_imports_none_of_its_libraries():
    code = ("import sys; from edge.config import build_config; from edge import modalities; "
            "config = build_config({'face': {'enabled': False}, 'eeg': {'enabled': True}}); "
            "[spec.name for spec in modalities.enabled(config)]; "
            "print(sorted(m for m in ('cv2', 'sounddevice', 'edge.sources.camera', 'edge.face.analyzer', "
            "'edge.voice.analyzer') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout
