"""A float TFLite graph rebuilt as a TensorFlow function, so the converter can fully quantize it.

MediaPipe publishes BlazeFace only as a .tflite flatbuffer (float16 weights behind DEQUANTIZE
ops), and the TFLite converter only quantizes from TensorFlow graphs. The detector uses a handful
of plain ops, so each is mapped back to its TensorFlow op with the flatbuffer's own weights; the
caller checks that the rebuilt function reproduces the published outputs before quantizing it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .convert import library_output
from .errors import ExportError

_PADDING = {0: "SAME", 1: "VALID"}
_TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}


def rebuild(path: Path) -> Callable:
    """A tf.function of the graph of a float TFLite model made of supported ops."""
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    op_names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = flatbuffer_utils.read_model(str(path))
    if len(model.subgraphs) != 1:
        raise ExportError(f"{path.name} has {len(model.subgraphs)} subgraphs; only single-graph models are rebuilt")
    graph = model.subgraphs[0]

    def constant(index: int) -> np.ndarray | None:
        tensor = graph.tensors[index]
        data = model.buffers[tensor.buffer].data
        if data is None or len(data) == 0:
            return None
        if tensor.type not in _TENSOR_TYPES:
            raise ExportError(f"{path.name}: constant tensor {index} has unsupported type {tensor.type}")
        values = np.frombuffer(bytes(data), _TENSOR_TYPES[tensor.type]).reshape(tensor.shape)
        return values.astype(np.float32) if values.dtype == np.float16 else values

    operators = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
        if name not in _BUILDERS:
            raise ExportError(f"{path.name} uses the TFLite op {name}, which the graph rebuild does not support "
                              f"(supported: {', '.join(sorted(_BUILDERS))})")
        operators.append((name, list(op.inputs), list(op.outputs), op.builtinOptions))
    constants = {index: constant(index) for index in range(len(graph.tensors))}
    input_shape = [int(v) for v in graph.tensors[graph.inputs[0]].shape]

    @tf.function(input_signature=[tf.TensorSpec(input_shape, tf.float32)])
    def function(image):
        values: dict[int, Any] = {graph.inputs[0]: image}

        def value(index: int):
            if index in values:
                return values[index]
            if constants.get(index) is None:
                raise ExportError(f"{path.name}: tensor {index} is read before any op writes it")
            return tf.constant(constants[index])

        for name, inputs, outputs, options in operators:
            values[outputs[0]] = _BUILDERS[name](tf, value, inputs, options, constants)
        return [values[index] for index in graph.outputs]

    return function


def _activation(tf, x, code: int):
    if code == 0:
        return x
    if code == 1:
        return tf.nn.relu(x)
    if code == 3:
        return tf.nn.relu6(x)
    raise ExportError(f"unsupported fused activation {code} in the TFLite graph")


def _conv(tf, value, inputs, o, constants):
    kernel = tf.transpose(value(inputs[1]), (1, 2, 3, 0))  # TFLite OHWI -> TensorFlow HWIO
    y = tf.nn.conv2d(value(inputs[0]), kernel, [1, o.strideH, o.strideW, 1], _PADDING[o.padding],
                     dilations=[1, o.dilationHFactor, o.dilationWFactor, 1])
    return _activation(tf, y + value(inputs[2]), o.fusedActivationFunction)


def _depthwise(tf, value, inputs, o, constants):
    x, kernel = value(inputs[0]), value(inputs[1])  # kernel [1, h, w, channels * multiplier]
    kernel = tf.reshape(kernel, (kernel.shape[1], kernel.shape[2], x.shape[-1], o.depthMultiplier))
    y = tf.nn.depthwise_conv2d(x, kernel, [1, o.strideH, o.strideW, 1], _PADDING[o.padding],
                               dilations=[o.dilationHFactor, o.dilationWFactor])
    return _activation(tf, y + value(inputs[2]), o.fusedActivationFunction)


def _reshape(tf, value, inputs, o, constants):
    shape = constants.get(inputs[1]) if len(inputs) > 1 else None
    return tf.reshape(value(inputs[0]), [int(v) for v in (shape if shape is not None else o.newShape)])


def _resize_bilinear(tf, value, inputs, o, constants):
    size = [int(v) for v in constants[inputs[1]]]
    return tf.compat.v1.image.resize_bilinear(value(inputs[0]), size, align_corners=bool(o.alignCorners),
                                              half_pixel_centers=bool(o.halfPixelCenters))


_BUILDERS = {
    "DEQUANTIZE": lambda tf, value, inputs, o, constants: tf.constant(constants[inputs[0]]),
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "RELU": lambda tf, value, inputs, o, constants: tf.nn.relu(value(inputs[0])),
    "ADD": lambda tf, value, inputs, o, constants: _activation(
        tf, value(inputs[0]) + value(inputs[1]), o.fusedActivationFunction),
    "PAD": lambda tf, value, inputs, o, constants: tf.pad(value(inputs[0]), value(inputs[1])),
    "MAX_POOL_2D": lambda tf, value, inputs, o, constants: _activation(
        tf, tf.nn.max_pool2d(value(inputs[0]), [o.filterHeight, o.filterWidth], [o.strideH, o.strideW],
                             _PADDING[o.padding]), o.fusedActivationFunction),
    "RESHAPE": _reshape,
    "CONCATENATION": lambda tf, value, inputs, o, constants: _activation(
        tf, tf.concat([value(i) for i in inputs], axis=o.axis), o.fusedActivationFunction),
    "RESIZE_BILINEAR": _resize_bilinear,
}


def max_output_difference(function, tflite_path: Path, samples: list[np.ndarray]) -> float:
    """Largest absolute difference between the rebuilt function and the published model on `samples`."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    outputs = [detail["index"] for detail in interpreter.get_output_details()]
    worst = 0.0
    for sample in samples:
        interpreter.set_tensor(source, sample)
        interpreter.invoke()
        published = [interpreter.get_tensor(index) for index in outputs]
        rebuilt = [tensor.numpy() for tensor in function(tf.constant(sample))]
        worst = max([worst] + [float(np.abs(a - b).max()) for a, b in zip(rebuilt, published)])
    return worst


def clip_outputs(function, limits: list[float | None]):
    """`function` with output k clipped to [-limits[k], limits[k]] (None: left alone).

    An int8 output spends its 256 levels on the calibrated range. BlazeFace's face logits span about
    -760 to +3 over the 896 anchors, so one level would be ~3 logits wide and every score near the
    threshold would round to the same few values; past +-12 a logit's sigmoid no longer changes a decision.
    """
    import tensorflow as tf

    signature = function.input_signature

    @tf.function(input_signature=signature)
    def clipped(image):
        outputs = function(image)
        return [output if limit is None else tf.clip_by_value(output, -limit, limit)
                for output, limit in zip(outputs, limits)]

    return clipped


def quantize_int8(function, calibration: list[np.ndarray]) -> bytes:
    """Full-integer int8 TFLite (int8 input and outputs) of a rebuilt function, min-max calibrated."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample] for sample in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
        with library_output():
            return converter.convert()
    except Exception as exc:  # the converter raises many unrelated types
        raise ExportError(f"int8 conversion of the rebuilt detector failed: {exc}") from None
