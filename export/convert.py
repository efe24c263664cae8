"""Keras / ONNX float models -> TFLite fp32, fp16, full-integer int8 and ONNX fp32, int8 QDQ.

All artifacts get a static batch of 1 (what TensorRT and microcontroller-style runtimes want;
the device loops over faces). int8 TFLite uses int8 kernels end to end, including int8 input
and output tensors whose scale and zero point go into the manifest; its weights are per-tensor
symmetric (smaller file, see keras_to_tflite) and its activation ranges are the least-error ranges
inside the calibrated min-max (mse_activation_ranges). ONNX int8 uses QDQ nodes with symmetric
per-channel weights and symmetric activations (zero point 0) clipped at the 99.999th percentile of
calibration, the form TensorRT's explicit-quantization path builds engines from.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import ExportError

log = logging.getLogger(__name__)
OPSET = 17


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


@contextmanager
def library_output():
    """Keep converters' chatter (saved-model dumps, quantizer settings) off the user's terminal.

    The converters print from Python and from C++, so both file descriptors are redirected; if
    the block fails, what they printed is passed on to stderr to explain the failure.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace")[-4000:])


def static_batch_model(model, input_shape: tuple[int, ...]):
    """The same layers behind an input of batch 1, so converted graphs have fully static shapes."""
    import keras

    inputs = keras.Input(shape=input_shape, batch_size=1, name="input")
    return keras.Model(inputs, model(inputs, training=False), name=f"{model.name}_static")


def keras_to_tflite(model, input_shape: tuple[int, ...], precision: str,
                    calibration: np.ndarray | None = None) -> bytes:
    """Convert with a static batch of 1. int8 needs real calibration samples."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(static_batch_model(model, input_shape))
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ExportError("int8 quantization needs calibration samples")

        def representative() -> Iterable[list[np.ndarray]]:
            for sample in calibration:
                yield [sample[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        # Per-tensor weight scales: per-channel scales plus int64 zero points cost ~27 KB on the
        # 58k-parameter mini-Xception (43% of fp32 size vs 33%) for no measured agreement gain.
        converter._experimental_disable_per_channel = True
        converter._experimental_calibrate_only = True
    elif precision != "fp32":
        raise ExportError(f"unknown TFLite precision {precision!r}")
    try:
        with library_output():
            converted = converter.convert()
        if precision == "int8":
            from tensorflow.lite.python.convert import mlir_quantize

            # the same quantizer call the converter makes, on the calibrated model with refined ranges
            ranged = mse_activation_ranges(converted, calibration)
            with library_output():
                converted = mlir_quantize(ranged, disable_per_channel=True,
                                          input_data_type=tf.int8, output_data_type=tf.int8)
        return converted
    except ExportError:
        raise
    except Exception as exc:  # the converter raises many unrelated types
        raise ExportError(f"TFLite {precision} conversion failed: {exc}") from None


def _quantization_mse(values: np.ndarray, low: float, high: float) -> float:
    """Mean squared error of int8 asymmetric fake quantization of `values` over [low, high] (0 included)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0
    if scale <= 0:
        return float(np.mean(values ** 2))
    zero_point = np.round(-128.0 - low / scale)
    levels = np.clip(np.round(values / scale + zero_point), -128, 127)
    return float(np.mean(((levels - zero_point) * scale - values) ** 2))


def _best_range(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """Shrink the calibrated [low, high] to the range with the least int8 error on the observed values.

    Rounding error falls with the step size and clipping error rises as the range shrinks, so a range
    a little inside the extremes usually wins (what TensorRT's and ONNX Runtime's entropy or percentile
    calibrators aim at). A negative bound is searched once the positive one is set, and the positive
    one again after.
    """
    factors = np.linspace(0.3, 1.0, 36)
    best_low = low

    def search_high(current_low: float) -> float:
        return min((high * f for f in factors), key=lambda h: _quantization_mse(values, current_low, h))

    best_high = search_high(best_low)
    if low < 0:
        best_low = min((low * f for f in factors), key=lambda lo: _quantization_mse(values, lo, best_high))
        best_high = search_high(best_low)
    return float(best_low), float(best_high)


def per_tensor_ranged(graph) -> list[int]:
    """Indices of a calibrated graph's tensors that carry one calibrated [min, max] (per-tensor activations)."""
    return [index for index, tensor in enumerate(graph.tensors)
            if tensor.quantization is not None and tensor.quantization.min is not None
            and len(tensor.quantization.min) == 1]


def mse_activation_ranges(calibrated: bytes, calibration: np.ndarray, values_per_sample: int = 512) -> bytes:
    """The calibrated model with each activation's min-max range replaced by its least-error range.

    Min-max calibration spends int8 steps on rare extremes; on the face model the refined ranges gave
    fewer top-1 flips than min-max on every augmentation seed measured (docs/quantization.md). Only plain per-tensor
    activation ranges change; the graph's input and output keep theirs.
    """
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = model.subgraphs[0]
    fixed = set(graph.inputs) | set(graph.outputs)
    ranged = [index for index in per_tensor_ranged(graph) if index not in fixed]
    if not ranged:
        return calibrated
    interpreter = Interpreter(model_content=bytes(calibrated), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    rng = np.random.default_rng(0)
    observed: dict[int, list[np.ndarray]] = {index: [] for index in ranged}
    for sample in calibration:
        interpreter.set_tensor(source, sample[None].astype(np.float32))
        interpreter.invoke()
        for index in ranged:
            values = interpreter.get_tensor(index).ravel()
            if values.size > values_per_sample:
                values = rng.choice(values, values_per_sample, replace=False)
            observed[index].append(values.astype(np.float32))
    for index in ranged:
        quantization = graph.tensors[index].quantization
        low, high = _best_range(np.concatenate(observed[index]), float(quantization.min[0]),
                                float(quantization.max[0]))
        quantization.min, quantization.max = [low], [high]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def keras_to_onnx(model, input_shape: tuple[int, ...]):
    """ONNX fp32 with a static batch of 1, via tf2onnx."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((1, *input_shape), tf.float32, name="input"),)
    try:
        with library_output():
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    except Exception as exc:
        raise ExportError(f"ONNX conversion with tf2onnx failed: {exc}") from None
    return proto


def tflite_to_onnx(tflite_path: Path):
    """ONNX from an existing TFLite file (used for detectors shipped only as TFLite)."""
    import tf2onnx

    try:
        with library_output():
            proto, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=OPSET)
    except Exception as exc:
        raise ExportError(f"ONNX conversion of {tflite_path.name} failed: {exc}") from None
    return proto


def fix_onnx_batch(proto, batch: int = 1):
    """Pin a dynamic leading dimension to `batch` so every shape is static (and names canonical)."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    return canonical_names(proto)


def canonical_names(proto):
    """Rename tensors and nodes by their place in the graph, so two conversions give identical bytes.

    tf2onnx numbers folded constants in an order that varies between runs, which makes the same
    model hash differently on every export. Graph inputs and outputs keep their names.
    """
    graph = proto.graph
    if any(attr.g.node or attr.graphs for node in graph.node for attr in node.attribute):
        return proto  # names inside subgraphs would have to follow; none of our models has one
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    renamed: dict[str, str] = {}
    initializers = {init.name for init in graph.initializer}
    for index, node in enumerate(graph.node):
        for slot, name in enumerate(node.input):
            if name in initializers and name not in keep and name not in renamed:
                renamed[name] = f"const_{index}_{slot}"
        for slot, name in enumerate(node.output):
            if name and name not in keep:
                renamed[name] = f"t_{index}_{slot}"
        node.name = f"{node.op_type}_{index}"
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    for init in graph.initializer:
        init.name = renamed.get(init.name, init.name)
    order = {name: rank for rank, name in enumerate(renamed.values())}
    graph.initializer.sort(key=lambda init: order.get(init.name, -1))
    for info in graph.value_info:
        info.name = renamed.get(info.name, info.name)
    graph.value_info.sort(key=lambda info: order.get(info.name, -1))
    return proto


class _Reader:
    """Feeds calibration samples to ONNX Runtime's static quantizer."""

    def __init__(self, input_name: str, samples: np.ndarray):
        self.input_name = input_name
        self.samples = iter(samples)

    def get_next(self):
        sample = next(self.samples, None)
        return None if sample is None else {self.input_name: sample[None].astype(np.float32)}


ONNX_CALIBRATION_PERCENTILE = 99.999


def quantize_onnx_qdq(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> None:
    """Static int8 QDQ: symmetric per-channel weights, symmetric activations clipped at a percentile.

    The 99.999th percentile of each activation, rather than its calibration maximum, spends the
    int8 levels on the values that occur: on the FER emotion model agreement rose from 94.9% to
    96.5% (docs/quantization.md).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = onnx.load(str(fp32_path)).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            with library_output():
                quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:
            log.warning("ONNX pre-processing skipped (%s)", exc)
            prepared = fp32_path
        try:
            with library_output():
                quantize_static(
                    str(prepared), str(out_path), _Reader(input_name, calibration),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.Percentile,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "CalibPercentile": ONNX_CALIBRATION_PERCENTILE},
                )
        except Exception as exc:
            raise ExportError(f"ONNX int8 quantization failed: {exc}") from None


def onnx_io(path: Path) -> tuple[list[dict], list[dict]]:
    """Input and output tensor descriptions of an ONNX file, for its manifest."""
    import onnx

    model = onnx.load(str(path))
    initializers = {init.name for init in model.graph.initializer}

    def describe(value) -> dict:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name
        return {"name": value.name, "shape": dims, "dtype": dtype, "quantization": None}

    inputs = [describe(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [describe(v) for v in model.graph.output]


def tflite_io(path: Path) -> tuple[list[dict], list[dict]]:
    """Input and output tensor descriptions of a TFLite file, read by the device's own runtime."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))

    def describe(detail: dict) -> dict:
        scale, zero_point = detail["quantization"]
        quant = {"scale": float(scale), "zero_point": int(zero_point)} if scale else None
        return {"name": detail["name"], "shape": [int(v) for v in detail["shape"]],
                "dtype": np.dtype(detail["dtype"]).name, "quantization": quant}

    return ([describe(d) for d in interpreter.get_input_details()],
            [describe(d) for d in interpreter.get_output_details()])
