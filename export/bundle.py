"""Turn one float classifier into the full set of edge artifacts, each with manifest and parity.

Generic over modality: face, voice and EEG exports describe their model in a `ModelSpec`
and call `export_classifier`. Everything is written into a temporary sibling directory and
moved into place only when every artifact converted, loaded and was measured, so a failed
export never leaves a half-written model directory.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge import __version__ as edge_version
from edge.backends import open_model
from edge.manifest import SCHEMA, manifest_path, sha256_file

from . import convert
from .errors import ExportError

TFLITE_PRECISIONS = ("fp32", "fp16", "int8")
ONNX_PRECISIONS = ("fp32", "int8")
BARS = {"int8_tflite_min_agreement": 0.98, "int8_tflite_max_size_ratio": 0.35}


@dataclass
class ModelSpec:
    """A float classifier and everything its manifests must say about it."""

    name: str                      # artifact file stem, e.g. "emotion"
    model_id: str
    task: str
    modality: str
    labels: list[str]
    input_shape: tuple[int, ...]   # without the batch dimension
    layout: str
    preprocessing: dict[str, Any]
    output_meaning: str
    source: dict[str, Any]
    calibration: np.ndarray        # preprocessed float32 samples
    validation: np.ndarray
    data_description: str
    keras_model: Any = None        # a Keras model, or None when the float model is ONNX
    onnx_model_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def reference(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of the float model: the ground truth every artifact is compared with."""
        if self.keras_model is not None:
            return np.asarray(self.keras_model.predict(samples, batch_size=64, verbose=0), dtype=np.float32)
        import onnxruntime as ort

        session = ort.InferenceSession(str(self.onnx_model_path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: s[None].astype(np.float32)})[0] for s in samples])


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def toolchain() -> dict[str, str]:
    versions = {"python": platform.python_version(), "emotion-edge": edge_version}
    for module in ("tensorflow", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert"):
        try:
            versions[module] = importlib.import_module(module).__version__
        except Exception:
            continue
    return versions


def base_manifest(spec: ModelSpec, artifact: Path, fmt: str, precision: str,
                  inputs: list[dict], outputs: list[dict], quantization: dict) -> dict[str, Any]:
    inputs[0]["layout"] = spec.layout
    for item in outputs:
        item["meaning"] = spec.output_meaning
    return {
        "schema": SCHEMA,
        "model_id": spec.model_id,
        "task": spec.task,
        "modality": spec.modality,
        "format": fmt,
        "precision": precision,
        "artifact": {"file": artifact.name, "sha256": sha256_file(artifact), "bytes": artifact.stat().st_size},
        "labels": list(spec.labels),
        "inputs": inputs,
        "outputs": outputs,
        "preprocessing": spec.preprocessing,
        "quantization": quantization,
        "source": spec.source,
        "data": spec.data_description,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "toolchain": toolchain(),
        **spec.extra,
    }


def measure_latency(run: Callable[[], Any], repeats: int = 50) -> dict[str, float]:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(float(np.median(times)), 3), "p95_ms": round(float(np.percentile(times, 95)), 3)}


def parity(artifact: Path, reference: np.ndarray, samples: np.ndarray) -> dict[str, Any]:
    """Agreement of one artifact with the float model, run on the device's own backend."""
    model = open_model(artifact, threads=1)
    probs = model.predict(samples)
    error = np.abs(probs - reference)
    return {
        "backend": model.key,
        "samples": int(len(samples)),
        "top1_agreement": round(float(np.mean(probs.argmax(1) == reference.argmax(1))), 4),
        "mean_abs_prob_error": round(float(error.mean()), 5),
        "max_abs_prob_error": round(float(error.max()), 5),
        "bytes": artifact.stat().st_size,
        "latency_1_thread": measure_latency(lambda: model.predict(samples[:1])),
    }


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """A temporary sibling directory that replaces `out_dir` only if the block succeeds."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    backup = out_dir.with_name(f".{out_dir.name}.previous")
    shutil.rmtree(backup, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, backup)
    os.replace(stage, out_dir)
    shutil.rmtree(backup, ignore_errors=True)


def export_classifier(spec: ModelSpec, stage: Path) -> list[dict[str, Any]]:
    """Write every artifact of `spec` into `stage`; return one parity row per artifact."""
    convert.quiet_tensorflow()
    reference = spec.reference(spec.validation)
    if reference.ndim != 2 or reference.shape[1] != len(spec.labels):
        raise ExportError(
            f"the model outputs {reference.shape[1:]} values per sample but {len(spec.labels)} labels were "
            f"given ({', '.join(spec.labels)}); pass one label per output class"
        )
    rows = []
    artifacts: list[tuple[Path, dict]] = []
    onnx_fp32 = stage / f"{spec.name}.fp32.onnx"
    if spec.keras_model is not None:
        for precision in TFLITE_PRECISIONS:
            path = stage / f"{spec.name}.{precision}.tflite"
            path.write_bytes(convert.keras_to_tflite(spec.keras_model, spec.input_shape, precision,
                                                     spec.calibration if precision == "int8" else None))
            artifacts.append((path, _tflite_quantization(precision, spec)))
        proto = convert.fix_onnx_batch(convert.keras_to_onnx(spec.keras_model, spec.input_shape))
    else:
        import onnx

        # No ONNX->TFLite converter fits this toolchain (onnx2tf pins an older TensorFlow), so an
        # ONNX float model yields the ONNX artifacts only; give a Keras model for TFLite.
        proto = convert.fix_onnx_batch(onnx.load(str(spec.onnx_model_path)))
    import onnx

    onnx.save(proto, str(onnx_fp32))
    artifacts.append((onnx_fp32, {"mode": "none", "io": "float32"}))
    onnx_int8 = stage / f"{spec.name}.int8.onnx"
    convert.quantize_onnx_qdq(onnx_fp32, onnx_int8, spec.calibration)
    artifacts.append((onnx_int8, {
        "mode": "static int8 QDQ", "io": "float32", "weights": "int8 symmetric per-channel",
        "activations": "int8 symmetric (zero point 0)",
        "calibration": f"percentile {convert.ONNX_CALIBRATION_PERCENTILE}",
        "calibration_samples": int(len(spec.calibration)), "target": "TensorRT explicit quantization / ONNX Runtime",
    }))
    for path, quantization in artifacts:
        fmt = "tflite" if path.suffix == ".tflite" else "onnx"
        precision = path.name.split(".")[-2]
        inputs, outputs = convert.tflite_io(path) if fmt == "tflite" else convert.onnx_io(path)
        manifest = base_manifest(spec, path, fmt, precision, inputs, outputs, quantization)
        write_json(manifest_path(path), manifest)
        figures = parity(path, reference, spec.validation)
        manifest["parity"] = {key: value for key, value in figures.items() if key != "backend"}
        manifest["parity"]["reference"] = "float model" + (" (Keras)" if spec.keras_model is not None else " (ONNX)")
        write_json(manifest_path(path), manifest)
        rows.append({"artifact": path.name, "format": fmt, "precision": precision, **figures})
    return rows


def _tflite_quantization(precision: str, spec: ModelSpec) -> dict[str, Any]:
    if precision == "fp32":
        return {"mode": "none", "io": "float32"}
    if precision == "fp16":
        return {"mode": "float16 weights", "io": "float32", "compute": "float32 (weights dequantized at load)"}
    return {"mode": "full integer int8", "io": "int8 (scale/zero point in inputs/outputs)",
            "kernels": "int8", "weights": "int8 per-tensor symmetric", "activations": "int8 asymmetric per-tensor",
            "calibration": "representative dataset; activation ranges shrunk to least int8 error (min-max as the upper bound)",
            "calibration_samples": int(len(spec.calibration))}


def check_bars(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The project's quantization bars, evaluated on measured rows."""
    by_name = {(row["format"], row["precision"]): row for row in rows}
    int8, fp32 = by_name.get(("tflite", "int8")), by_name.get(("tflite", "fp32"))
    if not int8 or not fp32:
        return []
    ratio = int8["bytes"] / fp32["bytes"]
    return [
        {"bar": "int8 TFLite top-1 agreement >= 98%", "measured": int8["top1_agreement"],
         "passed": int8["top1_agreement"] >= BARS["int8_tflite_min_agreement"]},
        {"bar": "int8 TFLite size <= 35% of fp32 TFLite", "measured": round(ratio, 4),
         "passed": ratio <= BARS["int8_tflite_max_size_ratio"]},
    ]


def format_table(rows: list[dict[str, Any]], bars: list[dict[str, Any]]) -> str:
    header = f"{'artifact':<28} {'backend':<12} {'top-1 agree':>11} {'mean|dp|':>9} {'max|dp|':>9} {'KiB':>8} {'ms (1 img)':>10}"
    lines = [header, "-" * len(header)]
    for row in rows:
        agreement = f"{row['top1_agreement'] * 100:.2f}%" if row.get("top1_agreement") is not None else "-"
        mean_err = f"{row['mean_abs_prob_error']:.5f}" if row.get("mean_abs_prob_error") is not None else "-"
        max_err = f"{row['max_abs_prob_error']:.5f}" if row.get("max_abs_prob_error") is not None else "-"
        lines.append(
            f"{row['artifact']:<28} {row['backend']:<12} {agreement:>11} {mean_err:>9} {max_err:>9} "
            f"{row['bytes'] / 1024:>8.1f} {row['latency_1_thread']['median_ms']:>10.3f}"
        )
    for bar in bars:
        lines.append(f"{'PASS' if bar['passed'] else 'FAIL'}  {bar['bar']}: measured {bar['measured']}")
    return "\n".join(lines)
