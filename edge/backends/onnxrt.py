"""ONNX artifacts on ONNX Runtime (CPU here; CUDA / TensorRT providers on a Jetson build)."""

from __future__ import annotations

import numpy as np

from ..errors import EdgeError
from ..manifest import Manifest
from .base import Backend


class OnnxRuntimeBackend(Backend):
    key = "onnxruntime"
    formats = ("onnx",)

    def __init__(self, manifest: Manifest, threads: int = 1, providers: list[str] | None = None):
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
        available = ort.get_available_providers()
        wanted = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(manifest.artifact_path), options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own untyped errors on bad files
            raise EdgeError(f"ONNX Runtime cannot load {manifest.artifact_path}: {exc}") from None
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
