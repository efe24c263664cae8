"""Inference backends: one file each in this package, found by looking (Frigate's detector plugins).

A backend is a `Backend` subclass (edge/backends/base.py) with a `key` ("litert", "onnxruntime",
"tensorrt", ...) in any module of this package; adding one is adding that file. Model runtimes are
imported inside each backend's constructor, so finding them costs only this package's own imports.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from ..errors import EdgeError
from ..manifest import Manifest, check_input_shape, load_manifest
from .base import Backend

log = logging.getLogger(__name__)
DEFAULT_FOR_FORMAT = {"tflite": "litert", "onnx": "onnxruntime"}


@cache
def backends() -> dict[str, type[Backend]]:
    """Every backend class in this package, by key."""
    found: dict[str, type[Backend]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Backend) and value.__module__ == module.__name__ \
                    and getattr(value, "key", ""):
                found[value.key] = value
    return dict(sorted(found.items()))


def check_backend(setting: str, value: str) -> None:
    """One line naming `setting` unless `value` is "auto" or a backend's key."""
    if value != "auto" and value not in backends():
        raise EdgeError(f"{setting} = {value!r} must be auto or one of {', '.join(backends())}")


def backend_class(key: str) -> type[Backend]:
    if key not in backends():
        raise EdgeError(f"unknown backend {key!r}; choose one of {', '.join(backends())} or 'auto'")
    return backends()[key]


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
