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
        self._interpreter_class = _interpreter_class()
        try:
            self.interpreter = self._interpreter_class(model_path=str(manifest.artifact_path), num_threads=self.threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgeError(f"LiteRT cannot load {manifest.artifact_path} ({' '.join(str(exc).split())}): the file is "
                            "not a working TFLite model; re-run emotion-export and copy its model directory "
                            "here again") from None
        details = {d["name"]: d for d in self.interpreter.get_output_details()}
        ordered = [details.get(spec.name) for spec in manifest.outputs]
        self._outputs = ordered if ordered and all(ordered) else list(details.values())
        # (index, scale, zero point) per output, looked up once rather than per call
        self._output_quant = [(out["index"], *out["quantization"]) for out in self._outputs]
        detail = self.interpreter.get_input_details()[0]
        self._input_index = detail["index"]
        self._input_dtype = np.dtype(detail["dtype"])
        self._input_quant = detail["quantization"] if detail["quantization"][0] else None
        self.input_quantization = (*self._input_quant, self._input_dtype) if self._input_quant else None
        self.input_shape = tuple(int(v) for v in detail["shape"])
        # one interpreter per input shape: resizing one interpreter back and forth would re-plan its
        # memory (and XNNPACK's) on every change, e.g. each time the number of faces in a batch changes
        self._interpreters = {self.input_shape: self.interpreter}

    def _resize(self, shape: tuple[int, ...]) -> bool:
        try:
            interpreter = self._interpreter_class(model_path=str(self.manifest.artifact_path),
                                                  num_threads=self.threads)
            interpreter.resize_tensor_input(self._input_index, list(shape))
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError):
            return False
        self._interpreters[shape] = interpreter
        return True

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        interpreter = self._interpreters[batch.shape]
        if self._input_quant is not None and batch.dtype != self._input_dtype:
            data = quantize(batch, *self._input_quant, self._input_dtype)
        else:
            data = batch.astype(self._input_dtype, copy=False)
        interpreter.set_tensor(self._input_index, data)
        interpreter.invoke()
        results = []
        for index, scale, zero_point in self._output_quant:
            raw = interpreter.get_tensor(index)  # already a copy the interpreter no longer touches
            results.append(dequantize(raw, scale, zero_point) if scale else raw.astype(np.float32, copy=False))
        return results
