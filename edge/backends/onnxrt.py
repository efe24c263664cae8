"""ONNX artifacts on ONNX Runtime, on the execution providers the config lists (CPU by default; CUDA and
TensorRT with NVIDIA's onnxruntime-gpu build on a Jetson)."""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import EdgeError
from ..manifest import Manifest
from .base import Backend, writable_cache

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
# Every provider name onnxruntime.get_all_providers() has listed since 1.16, so the config check catches a typo
# on any device, whichever onnxruntime build is installed there (or none).
KNOWN_PROVIDERS = (
    "TensorrtExecutionProvider", "CUDAExecutionProvider", "MIGraphXExecutionProvider", "ROCMExecutionProvider",
    "OpenVINOExecutionProvider", "DnnlExecutionProvider", "VitisAIExecutionProvider", "QNNExecutionProvider",
    "NnapiExecutionProvider", "VSINPUExecutionProvider", "JsExecutionProvider", "CoreMLExecutionProvider",
    "ArmNNExecutionProvider", "ACLExecutionProvider", "DmlExecutionProvider", "RknpuExecutionProvider",
    "WebNNExecutionProvider", "WebGpuExecutionProvider", "XnnpackExecutionProvider", "CANNExecutionProvider",
    "AzureExecutionProvider", "CPUExecutionProvider",
)
MISSING_REASON = "not in this onnxruntime build: install NVIDIA's onnxruntime-gpu for JetPack"

_warned: set[tuple[str, ...]] = set()  # provider sets already reported missing: one warning, not one per model
_warned_lock = threading.Lock()


def check_providers(key: str, providers: Sequence[str]) -> None:
    """Raise EdgeError naming `key` for an empty list or a name ONNX Runtime does not know (a typo)."""
    if not providers:
        raise EdgeError(f"{key} is empty: list ONNX Runtime execution providers in order of preference, "
                        f"e.g. [\"CUDAExecutionProvider\", \"CPUExecutionProvider\"]")
    for name in providers:
        if name not in KNOWN_PROVIDERS:
            close = difflib.get_close_matches(name, KNOWN_PROVIDERS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise EdgeError(f"{key}: {name!r} is not an ONNX Runtime execution provider; {hint}known names "
                            f"(case matters): {', '.join(KNOWN_PROVIDERS)}")


def session_providers(requested: Sequence[str], available: Sequence[str],
                      cache_dir: str | Path | None = None) -> list:
    """The `providers` argument for InferenceSession: the requested providers this build has, in order
    (CPU when none is), TensorRT with its engine and timing caches in the writable cache directory."""
    requested = list(requested or DEFAULT_PROVIDERS)
    missing = [name for name in requested if name not in available]
    if missing:
        with _warned_lock:
            report = tuple(missing) not in _warned
            _warned.add(tuple(missing))
        if report:
            log.warning("ONNX Runtime providers %s skipped (%s); this build has %s", ", ".join(missing),
                        MISSING_REASON, ", ".join(available))
    chosen = [name for name in requested if name in available] or list(DEFAULT_PROVIDERS)
    result = []
    for name in chosen:
        if name == "TensorrtExecutionProvider":
            cache = writable_cache(cache_dir) / "onnxruntime-trt"
            cache.mkdir(exist_ok=True)
            # QDQ artifacts carry their own int8 scales (explicit quantization), so trt_int8_enable stays off
            result.append((name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                                  "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache),
                                  "trt_fp16_enable": True}))
        else:
            result.append(name)
    return result


class OnnxRuntimeBackend(Backend):
    key = "onnxruntime"
    formats = ("onnx",)
    options = ("providers", "cache_dir")

    def __init__(self, manifest: Manifest, threads: int = 1, providers: Sequence[str] | None = None,
                 cache_dir: str | Path | None = None):
        super().__init__(manifest, threads)
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgeError("onnxruntime is not installed: pip install onnxruntime, or use a TFLite artifact") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Busy-waiting worker threads steal the core the camera decodes on; sleep instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        wanted = session_providers(providers or DEFAULT_PROVIDERS, ort.get_available_providers(), cache_dir)
        try:
            self.session = ort.InferenceSession(str(manifest.artifact_path), options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own untyped errors on bad files
            raise EdgeError(f"ONNX Runtime cannot load {manifest.artifact_path} ({' '.join(str(exc).split())}): the "
                            "file is not a working ONNX model; re-run emotion-export and copy its model directory "
                            "here again") from None
        self.provider = self.session.get_providers()[0]  # the highest-priority provider the session really has
        model_input = self.session.get_inputs()[0]
        self._input_name = model_input.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in model_input.shape)
        names = [o.name for o in self.session.get_outputs()]
        wanted_names = [spec.name for spec in manifest.outputs]
        self._output_names = wanted_names if wanted_names and set(wanted_names) <= set(names) else names

    def _resize(self, shape: tuple[int, ...]) -> bool:
        """A session takes any size along the model's symbolic dimensions and no other."""
        return len(shape) == len(self.input_shape) and all(
            fixed in (-1, size) for fixed, size in zip(self.input_shape, shape))

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        feed = {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}  # no copy when it already is
        return [np.asarray(out, dtype=np.float32) for out in self.session.run(self._output_names, feed)]
