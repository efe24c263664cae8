"""The int8 export's least-error activation ranges: never wider than min-max, and less int8 error where it matters."""

from __future__ import annotations

import numpy as np
import pytest

from export import convert


def test_best_range_trims_a_long_tail_and_keeps_a_tight_one():
    rng = np.random.default_rng(0)
    tailed = rng.laplace(0.0, 1.0, 200000).astype(np.float32)  # rare extremes far out on both sides
    lowest, highest = float(tailed.min()), float(tailed.max())
    low, high = convert._best_range(tailed, lowest, highest)
    assert 0.9 * lowest < low < 0 < high < 0.9 * highest
    assert convert._quantization_mse(tailed, low, high) < convert._quantization_mse(tailed, lowest, highest)

    uniform = rng.uniform(-3.0, 3.0, 20000).astype(np.float32)  # nothing to trim: clipping would only add error
    low, high = convert._best_range(uniform, -3.0, 3.0)
    assert low < -2.9 and high > 2.9


@pytest.fixture(scope="module")
def small_model():
    import keras

    convert.quiet_tensorflow()
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(16, 16, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))


def _graph(model_bytes: bytes):
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes)).subgraphs[0]


def _ranges(graph) -> dict[int, tuple[float, float]]:
    return {index: (float(graph.tensors[index].quantization.min[0]), float(graph.tensors[index].quantization.max[0]))
            for index in convert.per_tensor_ranged(graph)}


def test_refined_ranges_stay_inside_min_max_and_the_graph_ends_keep_theirs(small_model):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    calibration = rng.uniform(-1, 1, (64, 16, 16, 1)).astype(np.float32)
    calibration[:2] *= 8  # two outlier samples stretch min-max
    converter = tf.lite.TFLiteConverter.from_keras_model(convert.static_batch_model(small_model, (16, 16, 1)))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in calibration)
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()

    graph = _graph(calibrated)
    before, after = _ranges(graph), _ranges(_graph(convert.mse_activation_ranges(calibrated, calibration)))
    assert before.keys() == after.keys() and len(before) >= 3
    ends = set(graph.inputs) | set(graph.outputs)
    shrunk = 0
    for index, (low, high) in before.items():
        new_low, new_high = after[index]
        if index in ends:
            assert (new_low, new_high) == (low, high)
        else:
            assert low <= new_low <= 0.0 or new_low == low
            assert 0.0 <= new_high <= high
            shrunk += new_high < high
    assert shrunk >= 1


def test_int8_export_with_refined_ranges_is_integer_and_close_to_float(small_model):
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(2)
    calibration = rng.uniform(-1, 1, (64, 16, 16, 1)).astype(np.float32)
    model_bytes = convert.keras_to_tflite(small_model, (16, 16, 1), "int8", calibration)
    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert source["dtype"] == np.int8 and target["dtype"] == np.int8
    scale, zero_point = source["quantization"]
    out_scale, out_zero = target["quantization"]
    samples = rng.uniform(-1, 1, (32, 16, 16, 1)).astype(np.float32)
    errors = []
    for sample in samples:
        quantized = np.clip(np.round(sample / scale + zero_point), -128, 127).astype(np.int8)
        interpreter.set_tensor(source["index"], quantized[None])
        interpreter.invoke()
        probs = (interpreter.get_tensor(target["index"])[0].astype(np.float32) - out_zero) * out_scale
        errors.append(np.abs(probs - small_model(sample[None], training=False).numpy()[0]).max())
    assert max(errors) < 0.05, max(errors)
