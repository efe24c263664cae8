"""The one small interface every inference backend implements.

A backend loads one exported artifact (checked against its manifest) and runs a batch of
preprocessed float32 inputs, returning float32 outputs in the manifest's output order.
Quantized I/O (int8 TFLite) is converted inside the backend, so pipelines never care which
artifact they were given.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import EdgeError
from ..manifest import Manifest

MAX_PREPARED_SHAPES = 8  # extra input shapes one model keeps ready (batch sizes up to face.max_faces, a frame shape)


class Backend(ABC):
    key: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    # keyword options open_model() passes on to this backend's constructor (besides threads)
    options: ClassVar[tuple[str, ...]] = ()
    # what actually runs the model, for the log and the health topic (an ONNX Runtime provider, "CPU", ...)
    provider: str = "CPU"

    def __init__(self, manifest: Manifest, threads: int = 1):
        self.manifest = manifest
        self.threads = max(1, int(threads))
        self.input_shape: tuple[int, ...] = tuple(manifest.inputs[0].shape)
        # (scale, zero point, integer dtype) where the model takes quantized input; run() passes a batch
        # already of that dtype through unchanged, so a caller can quantize once (a lookup table for pixels)
        self.input_quantization: tuple[float, int, np.dtype] | None = None
        self._prepared: set[tuple[int, ...]] = set()  # input shapes besides input_shape that run() takes

    @property
    def static_batch(self) -> int | None:
        first = self.input_shape[0]
        return first if isinstance(first, int) and first > 0 else None

    @abstractmethod
    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one batch the model accepts as is (float32, or already quantized); return float32 outputs in
        manifest order."""

    def prepare(self, shape: tuple[int, ...]) -> bool:
        """Make run() take inputs of `shape` (another batch size, or another image size for a fully
        convolutional model) where this backend can resize the model; False where it cannot, and the caller
        keeps the manifest's shape. Backends that can override _resize."""
        shape = tuple(int(v) for v in shape)
        if shape == tuple(self.input_shape) or shape in self._prepared:
            return True
        if len(self._prepared) >= MAX_PREPARED_SHAPES or not self._resize(shape):
            return False
        self._prepared.add(shape)
        return True

    def _resize(self, shape: tuple[int, ...]) -> bool:
        """Get the model ready for inputs of `shape`; True on success."""
        return False

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run any number of samples: in one call where the backend can take the whole batch, else split
        into the model's static batch."""
        quantization = self.input_quantization
        quantized = quantization is not None and getattr(batch, "dtype", None) == quantization[2]
        batch = np.asarray(batch) if quantized else np.asarray(batch, dtype=np.float32)
        if batch.shape in self._prepared:
            return self._invoke(batch)
        expected = self.input_shape[1:]
        if tuple(batch.shape[1:]) != tuple(expected):
            raise ValueError(
                f"{self.manifest.model_id}: input shape {tuple(batch.shape[1:])} does not match the "
                f"model's {tuple(expected)}"
            )
        step = self.static_batch
        if step is None or batch.shape[0] == step or self.prepare(batch.shape):
            return self._invoke(batch)
        parts = [self._invoke(batch[i:i + step]) for i in range(0, batch.shape[0], step)]
        return [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """The first output, which for classifiers is the probability vector per sample."""
        return self.run(batch)[0]

    def describe(self) -> dict[str, Any]:
        """Backend and provider, the same keys for every backend, so health shows where each model runs."""
        return {"backend": self.key, "provider": self.provider, "artifact": self.manifest.artifact_path.name}


def cache_directory(configured: str | Path | None = None) -> Path:
    """Where compiled engines are cached: `configured` (device.cache_dir), else systemd's $CACHE_DIRECTORY
    (CacheDirectory=, writable under ProtectSystem=strict where the model directory in /opt is not), else
    ~/.cache/emotion-edge. Nothing is created here."""
    if configured:
        return Path(configured).expanduser()
    systemd = os.environ.get("CACHE_DIRECTORY", "")
    if systemd:
        return Path(systemd.split(":")[0])  # systemd joins several CacheDirectory= entries with ':'
    return Path("~/.cache/emotion-edge").expanduser()


def writable_cache(configured: str | Path | None = None) -> Path:
    """cache_directory(), created if needed; EdgeError when it cannot be written (an engine built there would
    be lost, and rebuilding one takes minutes on every start)."""
    path = cache_directory(configured)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeError(f"cannot create the engine cache directory {path}: {exc.strerror}; set device.cache_dir "
                        f"to a writable directory (under systemd: CacheDirectory=emotion-edge)") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise EdgeError(f"the engine cache directory {path} is not writable; set device.cache_dir to a writable "
                        f"directory (under systemd: CacheDirectory=emotion-edge)")
    return path


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """round(values / scale) + zero_point, clipped to the dtype; one scratch array (this runs per inference)."""
    info = np.iinfo(dtype)
    scaled = values / scale
    np.rint(scaled, out=scaled)
    scaled += zero_point
    np.clip(scaled, info.min, info.max, out=scaled)
    return scaled.astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """(values - zero_point) * scale as float32, in one new array."""
    result = values.astype(np.float32)
    result -= zero_point
    result *= scale
    return result


def pixel_table(to_input: Callable[[np.ndarray], np.ndarray],
                quantization: tuple[float, int, np.dtype] | None) -> np.ndarray | None:
    """For a model with quantized input: the quantized input of each pixel value 0..255, i.e. exactly what
    quantizing `to_input`'s float would give, so uint8 images become model input in one lookup (cv2.LUT).
    None for a float-input model."""
    if quantization is None:
        return None
    return quantize(to_input(np.arange(256, dtype=np.uint8)), *quantization)
