"""Inference backends, selected by key or by the artifact's format (one file per backend)."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import EdgeError
from ..manifest import Manifest, load_manifest
from .base import Backend

BACKENDS = {
    "litert": ("edge.backends.litert", "LiteRTBackend"),
    "onnxruntime": ("edge.backends.onnxrt", "OnnxRuntimeBackend"),
    "tensorrt": ("edge.backends.tensorrt", "TensorRTBackend"),
}
DEFAULT_FOR_FORMAT = {"tflite": "litert", "onnx": "onnxruntime"}


def backend_class(key: str) -> type[Backend]:
    if key not in BACKENDS:
        raise EdgeError(f"unknown backend {key!r}; choose one of {', '.join(sorted(BACKENDS))} or 'auto'")
    module_name, class_name = BACKENDS[key]
    return getattr(importlib.import_module(module_name), class_name)


def open_model(artifact: str | Path | Manifest, backend: str = "auto", threads: int = 1) -> Backend:
    """Load an artifact (checking its sha256) on the named backend, or the one its format needs."""
    manifest = artifact if isinstance(artifact, Manifest) else load_manifest(artifact)
    key = DEFAULT_FOR_FORMAT.get(manifest.format) if backend == "auto" else backend
    if key is None:
        raise EdgeError(f"{manifest.path}: no backend runs format {manifest.format!r}")
    cls = backend_class(key)
    if manifest.format not in cls.formats:
        raise EdgeError(
            f"backend {key!r} runs {'/'.join(cls.formats)} artifacts, but {manifest.artifact_path.name} is "
            f"{manifest.format}; pick the matching artifact or backend = \"auto\""
        )
    return cls(manifest, threads=threads)
