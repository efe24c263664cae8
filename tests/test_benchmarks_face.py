"""Smoke test of benchmarks/face_pipeline.py --quick: it runs on the real export and a real broker and
writes a complete result. Not a timed test: rates must be measured and positive, never compared to bars.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = {"emotion.int8.tflite", "emotion.fp32.tflite", "emotion.int8.onnx", "emotion.fp32.onnx"}
STAGES = {"decode", "detect", "classify", "other", "publish"}


def test_face_benchmark_quick_writes_complete_json(face_models, tmp_path):
    out = tmp_path / "face_pipeline.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "face_pipeline.py"), "--quick",
                           "--models", str(face_models), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"video", "decode_only", "runs", "fer", "peak_memory", "runtime_install", "summary"} <= set(result)
    assert result["quick"] is True
    assert result["video"]["width"] == 640 and result["video"]["height"] == 480
    assert result["decode_only"]["fps"] > 0
    for run in result["decode_only"]["runs"]:  # the floor is the faster of OpenCV's default threads and one thread
        rates = run["fps_by_cv2_threads"]
        assert "1" in rates and len(rates) == len({"1", str(run["cv2_threads"])} | set(rates))
        assert run["fps"] == max(rates.values()) == rates[str(run["cv2_threads"])]

    assert {run["emotion"] for run in result["runs"]} == ARTIFACTS
    for run in result["runs"]:
        assert run["backend"] == ("litert" if run["emotion"].endswith(".tflite") else "onnxruntime")
        assert run["frames"] == 20 and run["fps"] > 0 and run["seconds"] > 0
        assert set(run["stages_ms"]) == STAGES
        for stage in ("decode", "detect", "classify"):
            assert run["stages_ms"][stage]["mean"] > 0, (run["emotion"], stage)
        assert run["faces_per_frame"] > 0  # the demo video always shows at least one face
        assert isinstance(run["bars"]["decode"]["pass"], bool)
        paired = run["decode_paired"]  # the decode-only floor measured right before and after this run
        assert len(paired["runs"]) == 2 and all(fps > 0 for fps in paired["runs"])
        assert run["bars"]["decode"]["ratio"] == round(run["fps"] / paired["fps"], 3)
        assert run["bars"]["fer_keras"]["pass"] is None  # --quick does not run fer, so no verdict

    assert result["fer"]["available"] is False and result["fer"]["skipped"] == "--quick"
    memory = result["peak_memory"][0]
    assert memory["maxrss_mb"] > 0 and memory["faces"] > 0
    assert memory["tensorflow_imported"] is False and memory["torch_imported"] is False
    assert result["summary"]["best_fps"] == max(run["fps"] for run in result["runs"])
    assert "fer: NOT MEASURED" in done.stdout

    chosen = result["summary"]["runtime_default"]  # --quick runs the runtime default's threads and cadence
    assert chosen is not None and chosen["emotion"] == "emotion.int8.tflite"
    pairs = chosen["paired_runs"]  # the sweep's own pair plus --repeats (1 under --quick)
    assert len(pairs) == 2 and all(pair["e2e_fps"] > 0 and pair["decode_fps"] > 0 for pair in pairs)
    assert pairs[1]["ratio"] == round(pairs[1]["e2e_fps"] / pairs[1]["decode_fps"], 3)
    assert chosen["median_ratio"] == round((pairs[0]["ratio"] + pairs[1]["ratio"]) / 2, 3)
    assert chosen["median_pass"] == (chosen["median_ratio"] >= 0.6)
    assert f"median {chosen['median_ratio']:.1%}" in done.stdout
