"""Backends give the outputs of the plain interpreter call with the textbook (de)quantization formulas."""

from __future__ import annotations

import numpy as np
import pytest

from edge.backends import open_model


def reference_tflite(path, batch: np.ndarray) -> list[np.ndarray]:
    """One sample at a time through a fresh interpreter, (de)quantizing with the plain formulas, written
    here independently of edge.backends.base so a change to the shared helpers shows up."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    outputs = []
    for sample in batch:
        scale, zero_point = detail["quantization"]
        data = sample[None]
        if scale:
            info = np.iinfo(detail["dtype"])
            data = np.clip(np.round(data / scale) + zero_point, info.min, info.max).astype(detail["dtype"])
        else:
            data = data.astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], data)
        interpreter.invoke()
        out = interpreter.get_output_details()[0]
        scale, zero_point = out["quantization"]
        raw = interpreter.get_tensor(out["index"])
        outputs.append(((raw.astype(np.float32) - zero_point) * scale).astype(np.float32) if scale
                       else raw.astype(np.float32))
    return np.concatenate(outputs)


@pytest.mark.parametrize("name", ["emotion.int8.tflite", "emotion.fp32.tflite"])
def test_litert_matches_the_plain_interpreter(face_models, name):
    model = open_model(face_models / name, threads=1)
    rng = np.random.default_rng(5)
    # Values past the int8 range check the clipping; exact halves of the step check the rounding.
    batch = rng.uniform(-1.5, 1.5, (3, 64, 64, 1)).astype(np.float32)
    batch[0, :4, :4, 0] = np.float32(0.5 * 0.007812380325049162)
    for _ in range(2):
        got = model.predict(batch)
        assert got.dtype == np.float32 and got.shape == (3, 7)
        np.testing.assert_array_equal(got, reference_tflite(face_models / name, batch))


def test_onnx_accepts_float64_and_views(face_models):
    model = open_model(face_models / "emotion.fp32.onnx", threads=1)
    rng = np.random.default_rng(6)
    batch = rng.uniform(-1, 1, (2, 64, 64, 1))
    expected = model.predict(batch.astype(np.float32))
    np.testing.assert_array_equal(model.predict(batch), expected)
    wide = np.concatenate([batch, batch], axis=2)[:, :, ::2]  # a strided view, not contiguous
    np.testing.assert_array_equal(model.predict(wide), model.predict(np.ascontiguousarray(wide, np.float32)))
    assert expected.dtype == np.float32 and np.allclose(expected.sum(axis=1), 1.0, atol=1e-4)


def test_litert_runs_each_batch_size_in_one_call_on_an_interpreter_of_its_own(face_models):
    """Faces come and go, so the batch size changes from frame to frame: each size gets its own
    interpreter once (no re-planning per change), with outputs identical to one sample at a time."""
    from edge.backends.base import MAX_PREPARED_SHAPES

    path = face_models / "emotion.int8.tflite"
    model = open_model(path, threads=1)
    rng = np.random.default_rng(8)
    for size in (1, 3, 2, 3, 1, 2):
        batch = rng.uniform(-1, 1, (size, 64, 64, 1)).astype(np.float32)
        np.testing.assert_array_equal(model.predict(batch), reference_tflite(path, batch))
    assert sorted(shape[0] for shape in model._interpreters) == [1, 2, 3]
    # Past the limit of prepared shapes a batch is split into the model's own batch size, still correct.
    for size in range(4, 4 + MAX_PREPARED_SHAPES):
        batch = rng.uniform(-1, 1, (size, 64, 64, 1)).astype(np.float32)
        np.testing.assert_array_equal(model.predict(batch), reference_tflite(path, batch))
    assert len(model._interpreters) == 1 + MAX_PREPARED_SHAPES


def test_fixed_shape_onnx_model_refuses_other_shapes(face_models):
    model = open_model(face_models / "detector.fp32.onnx", threads=1)
    assert model.prepare(model.input_shape)
    assert not model.prepare((1, 96, 128, 3))
    with pytest.raises(ValueError, match="does not match"):
        model.run(np.zeros((1, 96, 128, 3), np.float32))
