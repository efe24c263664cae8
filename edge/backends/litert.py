"""TFLite artifacts on LiteRT (`ai_edge_litert`), falling back to the older `tflite_runtime`."""

from __future__ import annotations

import numpy as np

from ..errors import EdgeError
from ..manifest import Manifest
from .base import Backend, dequantize, quantize


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter
    except ImportError:
        raise EdgeError(
            "no TFLite runtime installed: pip install ai-edge-litert (or tflite-runtime with numpy<2 "
            "where no ai-edge-litert wheel exists), or use an ONNX artifact with backend = \"onnxruntime\""
        ) from None


class LiteRTBackend(Backend):
    key = "litert"
    formats = ("tflite",)

    def __init__(self, manifest: Manifest, threads: int = 1):
        super().__init__(manifest, threads)
        interpreter_class = _interpreter_class()
        try:
            self.interpreter = interpreter_class(model_path=str(manifest.artifact_path), num_threads=self.threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgeError(f"LiteRT cannot load {manifest.artifact_path}: {exc}") from None
        self._input = self.interpreter.get_input_details()[0]
        details = {d["name"]: d for d in self.interpreter.get_output_details()}
        ordered = [details.get(spec.name) for spec in manifest.outputs]
        self._outputs = ordered if ordered and all(ordered) else list(details.values())
        self.input_shape = tuple(int(v) for v in self._input["shape"])

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        detail = self._input
        if tuple(batch.shape) != tuple(detail["shape"]):
            self.interpreter.resize_tensor_input(detail["index"], batch.shape)
            self.interpreter.allocate_tensors()
            detail = self._input = self.interpreter.get_input_details()[0]
        scale, zero_point = detail["quantization"]
        data = quantize(batch, scale, zero_point, detail["dtype"]) if scale else batch.astype(detail["dtype"])
        self.interpreter.set_tensor(detail["index"], data)
        self.interpreter.invoke()
        results = []
        for out in self._outputs:
            raw = self.interpreter.get_tensor(out["index"])
            scale, zero_point = out["quantization"]
            results.append(dequantize(raw, scale, zero_point) if scale else raw.astype(np.float32))
        return results
