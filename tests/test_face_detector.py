"""The optimised BlazeFace decoding returns what the straightforward decoding returns.

`reference_detect` below is the plain version of the detector (letterbox with cv2 INTER_AREA,
sigmoid over all 896 anchors in float64, decode every candidate, NMS with one IoU pass per kept
face); it is what edge/face/detector.py did before logit thresholding, the box-blur shrink, the
reusable input buffer and the IoU-matrix NMS. Both run the same real model on real photos.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.backends import open_model
from edge.face.detector import FaceDetector, iou_matrix, ssd_anchors, weighted_nms


def reference_letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    height, width = rgb.shape[:2]
    side = max(height, width)
    new_w, new_h = max(1, round(width * size / side)), max(1, round(height * size / side))
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    tensor = np.full((size, size, 3), -1.0, dtype=np.float32)
    tensor[top:top + new_h, left:left + new_w] = small.astype(np.float32) * (1 / 127.5) - 1.0
    return tensor[None], float(side), left * side / size, top * side / size


def reference_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def reference_nms(boxes, keypoints, scores, iou_threshold):
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.arange(len(scores))
    kept = []
    while remaining.size:
        overlaps = reference_iou(boxes[remaining[0]], boxes[remaining])
        group = remaining[overlaps >= iou_threshold]
        weights = scores[group][:, None]
        blended_box = (boxes[group] * weights).sum(axis=0) / weights.sum()
        blended_kp = (keypoints[group] * weights[:, :, None]).sum(axis=0) / weights.sum()
        kept.append((blended_box, blended_kp, float(scores[remaining[0]])))
        remaining = remaining[overlaps < iou_threshold]
    return kept


def reference_detect(detector: FaceDetector, rgb: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
    size = detector.input_size
    tensor, side, pad_x, pad_y = reference_letterbox(rgb, size)
    regressors, classificators = detector.model.run(tensor)[:2]
    if regressors.shape[-1] == 1:
        regressors, classificators = classificators, regressors
    raw = regressors.reshape(-1, regressors.shape[-1])
    logits = np.clip(classificators.reshape(-1).astype(np.float64), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-logits))
    candidates = np.nonzero(scores >= detector.score_threshold)[0]
    if candidates.size == 0:
        return []
    anchors = ssd_anchors(size)[candidates]
    reg = raw[candidates]
    centre = reg[:, 0:2] / float(size) + anchors
    half = reg[:, 2:4] / float(size) / 2.0
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = reg[:, 4:16].reshape(-1, 6, 2) / float(size) + anchors[:, None, :]
    faces = []
    for box, kps, score in reference_nms(boxes, keypoints, scores[candidates], detector.iou_threshold):
        pixel_box = box * side - np.array([pad_x, pad_y, pad_x, pad_y])
        if min(pixel_box[2] - pixel_box[0], pixel_box[3] - pixel_box[1]) >= detector.min_face_size:
            faces.append((pixel_box, score, (kps * side - np.array([pad_x, pad_y])).astype(np.float32)))
        if len(faces) >= detector.max_faces:
            break
    return faces


def photos() -> dict[str, np.ndarray]:
    from skimage import data

    out = {}
    for name in ("astronaut", "camera", "coffee", "chelsea"):
        image = getattr(data, name)()
        rgb = np.stack([image] * 3, -1) if image.ndim == 2 else image
        out[name] = rgb
        out[f"{name}_mirrored"] = rgb[:, ::-1]  # a non-contiguous view, as a caller may pass
    astronaut = data.astronaut()
    # 640x480 and 1920x1080 shrink by whole odd factors (the box-blur path), 1280x720 by an even
    # one and 300x500 by a fraction (both cv2.resize); the 96 px one is enlarged.
    for width, height in ((640, 480), (1920, 1080), (1280, 720), (300, 500), (96, 96)):
        out[f"astronaut_{width}x{height}"] = cv2.resize(astronaut, (width, height), interpolation=cv2.INTER_AREA)
    return out


@pytest.mark.parametrize("artifact", ["detector.fp32.tflite", "detector.fp32.onnx", "detector.int8.tflite"])
@pytest.mark.parametrize("settings", [{}, {"min_face_size": 40, "max_faces": 3},
                                      {"score_threshold": 0.2, "iou_threshold": 0.5}])
def test_detector_matches_the_reference_decoding_on_real_photos(face_models, artifact, settings):
    detector = FaceDetector(open_model(face_models / artifact), **settings)
    found = 0
    for name, image in photos().items():
        expected = reference_detect(detector, image)
        for _ in range(2):  # the second call reuses the input buffer and the cached letterbox layout
            faces = detector.detect(image)
            assert len(faces) == len(expected), name
            for face, (box, score, keypoints) in zip(faces, expected):
                np.testing.assert_allclose(face.box, box, rtol=0, atol=1e-4, err_msg=name)
                assert abs(face.score - score) <= 1e-9, name
                np.testing.assert_allclose(face.keypoints, keypoints, rtol=0, atol=1e-4, err_msg=name)
        found += len(expected)
    assert found >= 8  # real faces were found, so the comparison covered boxes and not only empty lists


def test_astronaut_face_is_where_the_reference_puts_it(face_models):
    from skimage import data

    detector = FaceDetector(open_model(face_models / "detector.fp32.tflite"))
    faces = detector.detect(data.astronaut())
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    # The astronaut's face sits around x 170-270, y 60-180 of the 512x512 photo.
    assert 140 < x0 < 200 and 230 < x1 < 300 and 40 < y0 < 110 and 140 < y1 < 210
    assert faces[0].score > 0.9


@pytest.mark.parametrize("shape", [(480, 640, 3), (1080, 1920, 3), (288, 384, 3), (720, 1280, 3), (500, 300, 3),
                                   (100, 80, 3)])
def test_letterbox_is_identical_to_cv2_area_resize(face_models, shape):
    detector = FaceDetector(open_model(face_models / "detector.fp32.tflite"))
    rng = np.random.default_rng(sum(shape))
    for trial in range(6):
        noise = rng.integers(0, 256, shape, dtype=np.uint8)
        image = noise if trial % 2 else cv2.GaussianBlur(noise, (0, 0), 2)
        tensor, side, pad_x, pad_y = detector.preprocess(image)
        expected, ref_side, ref_pad_x, ref_pad_y = reference_letterbox(image, detector.input_size)
        np.testing.assert_array_equal(tensor, expected)
        assert (side, pad_x, pad_y) == (ref_side, ref_pad_x, ref_pad_y)


@pytest.mark.parametrize("shape", [(480, 640, 3), (720, 1280, 3), (100, 80, 3)])
def test_int8_letterbox_is_the_quantized_float_letterbox(face_models, shape):
    """The int8 detector's pixel table gives exactly what quantizing the float input would."""
    from edge.backends.base import quantize

    model = open_model(face_models / "detector.int8.tflite")
    assert model.input_quantization is not None and model.input_quantization[2] == np.int8
    detector = FaceDetector(model)
    rng = np.random.default_rng(sum(shape))
    for trial in range(4):
        image = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 1 + trial)
        tensor = detector.preprocess(image)[0]
        assert tensor.dtype == np.int8
        np.testing.assert_array_equal(tensor, quantize(reference_letterbox(image, detector.input_size)[0],
                                                       *model.input_quantization))


def test_letterbox_padding_is_reset_when_the_frame_shape_changes(face_models):
    detector = FaceDetector(open_model(face_models / "detector.fp32.tflite"))
    white_square = np.full((256, 256, 3), 255, np.uint8)
    assert np.all(detector.preprocess(white_square)[0] == 1.0)
    tall = np.full((256, 128, 3), 255, np.uint8)
    tensor = detector.preprocess(tall)[0]
    np.testing.assert_array_equal(tensor, reference_letterbox(tall, detector.input_size)[0])
    assert np.all(tensor[0, :, :32] == -1.0)  # padding, not the previous frame's white


def test_weighted_nms_matches_the_reference_on_crowded_boxes():
    rng = np.random.default_rng(7)
    for trial in range(50):
        count = int(rng.integers(1, 40))
        centres = rng.uniform(0.2, 0.8, (count, 2)).astype(np.float32)
        sizes = rng.uniform(0.05, 0.3, (count, 2)).astype(np.float32)
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
        keypoints = rng.uniform(0, 1, (count, 6, 2)).astype(np.float32)
        scores = rng.uniform(0.5, 1.0, count)
        for threshold in (0.1, 0.3, 0.6):
            got = weighted_nms(boxes, keypoints, scores, threshold)
            want = reference_nms(boxes, keypoints, scores, threshold)
            assert len(got) == len(want)
            for (box, kps, score), (ref_box, ref_kps, ref_score) in zip(got, want):
                np.testing.assert_array_equal(box, ref_box)
                np.testing.assert_array_equal(kps, ref_kps)
                assert score == ref_score


def test_iou_matrix_matches_pairwise_iou():
    rng = np.random.default_rng(3)
    boxes = rng.uniform(0, 1, (12, 4)).astype(np.float32)
    boxes[:, 2:] += boxes[:, :2]
    matrix = iou_matrix(boxes)
    for i in range(len(boxes)):
        np.testing.assert_array_equal(matrix[i], reference_iou(boxes[i], boxes))
    assert np.allclose(np.diag(matrix), 1.0)


def test_zero_area_box_does_not_stall_nms():
    boxes = np.array([[0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.3, 0.3]], np.float32)
    keypoints = np.zeros((2, 6, 2), np.float32)
    kept = weighted_nms(boxes, keypoints, np.array([0.9, 0.8]), 0.3)
    assert [score for _, _, score in kept] == [0.9, 0.8]


def test_int8_emotion_crops_are_the_quantized_float_crops(face_models):
    """The pipeline's crop table gives exactly what quantizing the float crops would, for any crop size."""
    from edge.backends.base import quantize
    from edge.face.analyzer import FaceAnalyzer
    from edge.face.config import FaceConfig
    from edge.face.preprocess import crops_to_batch

    pipeline = FaceAnalyzer(FaceConfig(models=str(face_models), emotion="emotion.int8.tflite"))
    quantization = pipeline.model.input_quantization
    assert quantization is not None and pipeline._crop_table is not None
    rng = np.random.default_rng(5)
    crops = [cv2.GaussianBlur(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), (0, 0), 2)
             for side in (40, 64, 151, 230)]
    batch = crops_to_batch(crops, pipeline.preprocessing, pipeline._crop_table)
    assert batch.dtype == np.int8 and batch.shape == (4, 64, 64, 1)
    np.testing.assert_array_equal(batch, quantize(crops_to_batch(crops, pipeline.preprocessing), *quantization))


@pytest.mark.parametrize("artifact", ["detector.fp32.tflite", "detector.int8.tflite"])
def test_fitted_input_is_the_square_letterbox_without_its_padding(face_models, artifact):
    """On a fitted input the frame's pixels are exactly the square letterbox's: only padding rows go."""
    square = FaceDetector(open_model(face_models / artifact))
    fitted = FaceDetector(open_model(face_models / artifact), fit_input=True)
    astronaut = photos()["astronaut"]
    # 4:3 fills 96 rows exactly; 16:9 (72 rows) gets 12 rows of padding above and below
    for (width, height), rows, top in (((640, 480), 96, 0), ((1280, 720), 96, 12)):
        frame = cv2.resize(astronaut, (width, height), interpolation=cv2.INTER_AREA)
        assert fitted.model_input(height, width) == (rows, 128)
        tensor, side, pad_x, pad_y = fitted.preprocess(frame)
        reference, ref_side, _, ref_pad_y = square.preprocess(frame)
        content = round(height * 128 / width)
        square_top = (128 - content) // 2
        np.testing.assert_array_equal(tensor[0, top:top + content], reference[0, square_top:square_top + content])
        padding = reference[0, 0, 0, 0]  # the square letterbox's own padding value
        assert np.all(tensor[0, :top] == padding) and np.all(tensor[0, top + content:] == padding)
        assert side == ref_side and pad_x == 0 and pad_y == top * side / 128 and ref_pad_y == square_top * side / 128


def test_fitted_input_falls_back_to_square_where_it_does_not_apply(face_models):
    fitted = FaceDetector(open_model(face_models / "detector.int8.tflite"), fit_input=True)
    assert fitted.model_input(640, 480) == (128, 128)  # portrait: faces cut by the frame's side were lost
    assert fitted.model_input(512, 512) == (128, 128)
    assert fitted.model_input(1024, 1280) == (128, 128)  # 5:4 needs all 128 rows anyway
    onnx = FaceDetector(open_model(face_models / "detector.fp32.onnx"), fit_input=True)
    assert onnx.model_input(480, 640) == (128, 128)  # a fixed-shape ONNX model cannot be resized
    assert FaceDetector(open_model(face_models / "detector.int8.tflite")).model_input(480, 640) == (128, 128)


@pytest.mark.parametrize("artifact", ["detector.fp32.tflite", "detector.int8.tflite"])
def test_fitted_detector_finds_the_faces_the_square_one_finds(face_models, artifact):
    from edge.face.tracker import box_iou

    """Every clear face (score >= 0.7) one finds, the other finds too (borderline ones, such as the cat at
    0.54, may go either way; the export's bars count those over its check images)."""
    square = FaceDetector(open_model(face_models / artifact))
    fitted = FaceDetector(open_model(face_models / artifact), fit_input=True)
    found = 0
    for name, image in photos().items():
        expected, faces = square.detect(image), fitted.detect(image)
        for clear, other in ((expected, faces), (faces, expected)):
            clear = [face for face in clear if face.score >= 0.7]
            if clear:
                assert other, name
                overlap = box_iou(np.array([f.box for f in clear]), np.array([f.box for f in other]))
                assert overlap.max(axis=1).min() >= 0.7, name
        found += sum(face.score >= 0.7 for face in expected)
    assert found >= 8
