"""ONNX (int8 QDQ or fp32) artifacts compiled to TensorRT engines on a Jetson, TensorRT 10 API.

The QDQ ONNX artifact carries its own int8 scales (explicit quantization), so no calibrator is
needed: the builder places int8 kernels where the Q/DQ nodes say and fp16 elsewhere. An engine is
specific to the GPU and TensorRT version, so it is built on the device on first load and cached
in the writable cache directory (device.cache_dir; systemd's CacheDirectory, since the model directory
is read-only under ProtectSystem=strict) under a name with the artifact hash and the TensorRT version.

Not executed in this project's CI: TensorRT and CUDA are not installable on the build machine
(no GPU, libraries outside the package registries). Written against the TensorRT 10 Python API
(name-based I/O tensors, build_serialized_network, execute_async_v3) and cuda-python's runtime.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import EdgeError
from ..manifest import Manifest
from .base import Backend, cache_directory, writable_cache

log = logging.getLogger(__name__)


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise EdgeError("the tensorrt backend needs cuda-python: pip install \"cuda-python>=12.2,<13\" "
                              "(the jetson extra)") from None
    return cudart


def _check(result):
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise EdgeError(f"CUDA call failed with error {error}")
    return values[0] if len(values) == 1 else values


def engine_path(manifest: Manifest, trt_version: str, cache_dir: str | Path | None = None) -> Path:
    """Where the engine for this artifact and TensorRT version is cached (see cache_directory)."""
    stem = manifest.artifact_path.stem
    return cache_directory(cache_dir) / f"{stem}.{manifest.sha256[:12]}.trt{trt_version}.engine"


class TensorRTBackend(Backend):
    key = "tensorrt"
    formats = ("onnx",)
    options = ("cache_dir",)

    def __init__(self, manifest: Manifest, threads: int = 1, cache_dir: str | Path | None = None,
                 workspace_mb: int = 256):
        super().__init__(manifest, threads)
        try:
            import tensorrt as trt
        except ImportError:
            raise EdgeError(
                "TensorRT is not installed: on a Jetson it comes with JetPack (python3-libnvinfer); elsewhere use "
                "backend = \"onnxruntime\" or a TFLite artifact"
            ) from None
        self.trt = trt
        self.cudart = _cudart()
        self.logger = trt.Logger(trt.Logger.WARNING)
        writable_cache(cache_dir)
        cached = engine_path(manifest, trt.__version__, cache_dir)
        serialized = cached.read_bytes() if cached.is_file() else self._build(cached, workspace_mb)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(serialized)
        if self.engine is None:
            raise EdgeError(f"TensorRT could not load engine {cached}; delete it to rebuild")
        self.provider = f"TensorRT {trt.__version__}"
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate())
        self.inputs, self.outputs = [], []
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            device = _check(self.cudart.cudaMalloc(int(np.prod(shape)) * dtype.itemsize))
            self.context.set_tensor_address(name, int(device))
            entry = (name, shape, dtype, device)
            mode = self.engine.get_tensor_mode(name)
            (self.inputs if mode == trt.TensorIOMode.INPUT else self.outputs).append(entry)
        wanted = [spec.name for spec in manifest.outputs]
        self.outputs.sort(key=lambda item: wanted.index(item[0]) if item[0] in wanted else len(wanted))
        self.input_shape = self.inputs[0][1]

    def _build(self, target: Path, workspace_mb: int) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(self.manifest.artifact_path.read_bytes()):
            errors = " ".join("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)).split())
            raise EdgeError(f"TensorRT cannot parse {self.manifest.artifact_path} ({errors}): the file is not a "
                            "working ONNX model; re-run emotion-export and copy its model directory here again")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        if self.manifest.data.get("precision") == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization from the QDQ nodes
        if builder.platform_has_fast_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        log.info("building TensorRT engine for %s (first load on this device)", self.manifest.artifact_path.name)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EdgeError(f"TensorRT failed to build an engine for {self.manifest.artifact_path.name}")
        data = bytes(serialized)
        tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return data

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        cudart = self.cudart
        name, shape, dtype, device = self.inputs[0]
        host = np.ascontiguousarray(batch.reshape(shape), dtype=dtype)
        _check(cudart.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise EdgeError("TensorRT execution failed")
        results = []
        for _, out_shape, out_dtype, out_device in self.outputs:
            out = np.empty(out_shape, dtype=out_dtype)
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, out_device, out.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
            results.append(out)
        _check(cudart.cudaStreamSynchronize(self.stream))
        return [result.astype(np.float32) for result in results]
