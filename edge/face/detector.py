"""MediaPipe BlazeFace decoding: SSD anchors, box/keypoint regression, weighted NMS.

The detector model only emits raw regressions per anchor; this module turns them into face
boxes in the source image's pixel coordinates. Anchor layouts follow MediaPipe's published
SSD anchor options for the short-range (128 px) and full-range (192 px) models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backends.base import Backend, pixel_table

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


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """All pairwise intersection-over-union values of `boxes` (x0, y0, x1, y1) at once."""
    x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(areas[:, None] + areas[None, :] - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float):
    """BlazeFace's blending suppression: overlapping detections are averaged, weighted by score.

    The candidates are few (those above the score threshold), so one IoU matrix up front is
    cheaper than an IoU pass per kept face.
    """
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    overlaps = iou_matrix(boxes) >= iou_threshold
    free = np.ones(len(scores), dtype=bool)
    kept = []
    for first in range(len(scores)):
        if not free[first]:
            continue
        members = overlaps[first] & free
        members[first] = True  # a degenerate (zero-area) box still forms its own group
        free &= ~members
        weights = scores[members][:, None]
        total = weights.sum()
        blended_box = (boxes[members] * weights).sum(axis=0) / total
        blended_kp = (keypoints[members] * weights[:, :, None]).sum(axis=0) / total
        kept.append((blended_box, blended_kp, float(scores[first])))
    return kept


def to_model_range(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 pixels -> the detector's [-1, 1] float input."""
    out = np.multiply(pixels, np.float32(1 / 127.5), out=out, dtype=np.float32)
    out -= np.float32(1.0)
    return out


def _logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability))


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
        # Anchors whose raw logit is below this cannot reach score_threshold, so the sigmoid and the
        # decoding only run on the few that can. The margin keeps the exact float64 test the final word.
        self._logit_floor = _logit(score_threshold) - 1e-3 if 0.0 < score_threshold < 1.0 else -math.inf
        size = self.input_size
        # An int8 model's input is written straight from the uint8 pixels through a 256-entry table that
        # holds, per pixel value, exactly what quantizing the float path's value gives (no float frame).
        quantization = model.input_quantization
        self._table = pixel_table(to_model_range, quantization)
        self._padding = -1.0 if self._table is None else self._table[0]  # pixel 0 is -1.0, the padding value
        dtype = np.float32 if quantization is None else quantization[2]
        self._input = np.full((1, size, size, 3), self._padding, dtype=dtype)  # padding stays between frames
        self._layout: tuple | None = None  # letterbox geometry of the last frame shape

    def _geometry(self, height: int, width: int) -> tuple:
        """Letterbox placement for a frame shape, worked out once per shape."""
        side = max(height, width)
        size = self.input_size
        new_w, new_h = max(1, round(width * size / side)), max(1, round(height * size / side))
        top, left = (size - new_h) // 2, (size - new_w) // 2
        # An odd whole-number shrink factor makes INTER_AREA a plain k x k box average; a box blur
        # sampled at the block centres gives the same pixels (odd k rounds the same way) at half the cost.
        factor = side // size
        box = factor if (factor >= 3 and factor % 2 and side == factor * size and width == new_w * factor
                         and height == new_h * factor) else 0
        return (height, width, new_w, new_h, top, left, float(side), left * side / size, top * side / size, box)

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """Write the letterboxed, [-1, 1]-scaled (or quantized) frame into the reusable input buffer."""
        import cv2

        height, width = rgb.shape[:2]
        layout = self._layout
        if layout is None or layout[0] != height or layout[1] != width:
            layout = self._layout = self._geometry(height, width)
            self._input.fill(self._padding)
        _, _, new_w, new_h, top, left, side, pad_x, pad_y, box = layout
        if box:
            half = box // 2
            small = cv2.blur(rgb, (box, box))[half::box, half::box]
        else:
            interpolation = cv2.INTER_AREA if side > self.input_size else cv2.INTER_LINEAR
            small = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
        region = self._input[0, top:top + new_h, left:left + new_w]
        if self._table is not None:
            region[...] = cv2.LUT(small, self._table)
        else:
            to_model_range(small, out=region)
        return self._input, side, pad_x, pad_y

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Letterbox to a square model input scaled to [-1, 1]; return the mapping back.

        The frame is shrunk first and the small result padded, so the costly area resampling
        never touches padding (returned offsets are in source pixels). The tensor is a copy the
        caller may keep; `detect` itself reuses one buffer.
        """
        tensor, side, pad_x, pad_y = self._letterbox(rgb)
        return tensor.copy(), side, pad_x, pad_y

    def detect(self, rgb: np.ndarray) -> list[Face]:
        tensor, side, pad_x, pad_y = self._letterbox(rgb)
        regressors, classificators = self.model.run(tensor)[:2]
        if regressors.shape[-1] == 1:  # output order differs between converters
            regressors, classificators = classificators, regressors
        logits = classificators.reshape(-1)
        candidates = np.flatnonzero(logits >= self._logit_floor)
        if candidates.size == 0:
            return []
        chosen = np.clip(logits[candidates].astype(np.float64), -100.0, 100.0)
        scores = 1.0 / (1.0 + np.exp(-chosen))
        passed = scores >= self.score_threshold
        candidates, scores = candidates[passed], scores[passed]
        if candidates.size == 0:
            return []
        size = float(self.input_size)
        anchors = self.anchors[candidates]
        reg = regressors.reshape(-1, regressors.shape[-1])[candidates]
        centre = reg[:, 0:2] / size + anchors
        half = reg[:, 2:4] / size / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        keypoints = reg[:, 4:16].reshape(-1, 6, 2) / size + anchors[:, None, :]
        faces = []
        box_offset = np.array([pad_x, pad_y, pad_x, pad_y])
        kp_offset = np.array([pad_x, pad_y])
        for box, kps, score in weighted_nms(boxes, keypoints, scores, self.iou_threshold):
            x0, y0, x1, y1 = (box * side - box_offset).tolist()
            if min(x1 - x0, y1 - y0) >= self.min_face_size:
                faces.append(Face((x0, y0, x1, y1), score, (kps * side - kp_offset).astype(np.float32)))
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
