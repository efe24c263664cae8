"""Inference backends, selected by key or by the artifact's format (one file per backend)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path

from ..errors import EdgeError
from ..manifest import Manifest, check_input_shape, load_manifest
from .base import Backend

log = logging.getLogger(__name__)
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


def open_model(artifact: str | Path | Manifest, backend: str = "auto", threads: int = 1,
               providers: Sequence[str] | None = None, cache_dir: str | Path | None = None) -> Backend:
    """Load an artifact (checking its sha256) on the named backend, or the one its format needs.

    `providers` (ONNX Runtime's execution providers, in order) and `cache_dir` (engine caches) reach only
    the backends that use them; where the model runs is logged once here."""
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
    given = {"providers": providers, "cache_dir": cache_dir}
    model = cls(manifest, threads=threads, **{name: value for name, value in given.items() if name in cls.options})
    check_input_shape(manifest, model.input_shape)
    log.info("%s runs on %s (%s)", manifest.artifact_path.name, key, model.provider)
    return model
