"""MediaPipe BlazeFace decoding: SSD anchors, box/keypoint regression, weighted NMS.

The detector model only emits raw regressions per anchor; this module turns them into face
boxes in the source image's pixel coordinates. Anchor layouts follow MediaPipe's published
SSD anchor options for the short-range (128 px) and full-range (192 px) models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.base import Backend

ANCHOR_OPTIONS = {
    # input size, strides of the feature maps, anchors per cell for each stride
    128: {"strides": (8, 16, 16, 16), "anchors_per_layer": 2},
    192: {"strides": (4,), "anchors_per_layer": 1},
}


def ssd_anchors(input_size: int) -> np.ndarray:
    """Anchor centres (x, y) in [0, 1], in the order the model emits its regressions."""
    options = ANCHOR_OPTIONS[input_size]
    strides = options["strides"]
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        repeats = 0
        while layer < len(strides) and strides[layer] == stride:
            repeats += options["anchors_per_layer"]
            layer += 1
        cells = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, repeats, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


@dataclass
class Face:
    """One detected face in source-image pixels."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    keypoints: np.ndarray  # (6, 2): right eye, left eye, nose, mouth, right ear, left ear

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float):
    """BlazeFace's blending suppression: overlapping detections are averaged, weighted by score."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.arange(len(scores))
    kept = []
    while remaining.size:
        overlaps = iou(boxes[remaining[0]], boxes[remaining])
        group = remaining[overlaps >= iou_threshold]
        weights = scores[group][:, None]
        blended_box = (boxes[group] * weights).sum(axis=0) / weights.sum()
        blended_kp = (keypoints[group] * weights[:, :, None]).sum(axis=0) / weights.sum()
        kept.append((blended_box, blended_kp, float(scores[remaining[0]])))
        remaining = remaining[overlaps < iou_threshold]
    return kept


class FaceDetector:
    """Runs a BlazeFace artifact on whole frames and returns faces in frame pixels."""

    def __init__(self, model: Backend, score_threshold: float = 0.5, iou_threshold: float = 0.3,
                 min_face_size: int = 24, max_faces: int = 5):
        self.model = model
        self.input_size = int(model.input_shape[1])
        if self.input_size not in ANCHOR_OPTIONS:
            raise ValueError(f"no BlazeFace anchor layout for a {self.input_size}px input")
        self.anchors = ssd_anchors(self.input_size)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.min_face_size = min_face_size
        self.max_faces = max_faces

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Letterbox to a square model input scaled to [-1, 1]; return the mapping back.

        The frame is shrunk first and the small result padded, so the costly area resampling
        never touches padding (returned offsets are in source pixels).
        """
        import cv2

        height, width = rgb.shape[:2]
        side = max(height, width)
        size = self.input_size
        new_w, new_h = max(1, round(width * size / side)), max(1, round(height * size / side))
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        small = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
        top, left = (size - new_h) // 2, (size - new_w) // 2
        tensor = np.full((size, size, 3), -1.0, dtype=np.float32)
        tensor[top:top + new_h, left:left + new_w] = small.astype(np.float32) * (1 / 127.5) - 1.0
        pad_x, pad_y = left * side / size, top * side / size
        return tensor[None], float(side), pad_x, pad_y

    def detect(self, rgb: np.ndarray) -> list[Face]:
        tensor, side, pad_x, pad_y = self.preprocess(rgb)
        regressors, classificators = self.model.run(tensor)[:2]
        if regressors.shape[-1] == 1:  # output order differs between converters
            regressors, classificators = classificators, regressors
        raw = regressors.reshape(-1, regressors.shape[-1])
        logits = np.clip(classificators.reshape(-1).astype(np.float64), -100.0, 100.0)
        scores = 1.0 / (1.0 + np.exp(-logits))
        candidates = np.nonzero(scores >= self.score_threshold)[0]
        if candidates.size == 0:
            return []
        size = float(self.input_size)
        anchors = self.anchors[candidates]
        reg = raw[candidates]
        centre = reg[:, 0:2] / size + anchors
        half = reg[:, 2:4] / size / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        keypoints = reg[:, 4:16].reshape(-1, 6, 2) / size + anchors[:, None, :]
        faces = []
        for box, kps, score in weighted_nms(boxes, keypoints, scores[candidates], self.iou_threshold):
            pixel_box = box * side - np.array([pad_x, pad_y, pad_x, pad_y])
            pixel_kps = kps * side - np.array([pad_x, pad_y])
            face = Face(tuple(float(v) for v in pixel_box), score, pixel_kps.astype(np.float32))
            if min(face.width, face.height) >= self.min_face_size:
                faces.append(face)
            if len(faces) >= self.max_faces:
                break
        return faces


def square_crop_box(face: Face, frame_shape: tuple[int, ...], margin: float = 0.15) -> tuple[int, int, int, int]:
    """A square box around the face, widened by `margin` so the crop looks like FER2013's framing."""
    x0, y0, x1, y1 = face.box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) * (1 + margin) / 2
    height, width = frame_shape[:2]
    return (int(max(0, cx - half)), int(max(0, cy - half)), int(min(width, cx + half)), int(min(height, cy + half)))
