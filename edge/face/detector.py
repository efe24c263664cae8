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
from ..errors import EdgeError

ANCHOR_OPTIONS = {
    # square input size: strides of the feature maps, anchors per cell for each stride, and the multiple a
    # fitted input's sides must keep (the largest stride), or None where the model only runs square
    128: {"strides": (8, 16, 16, 16), "anchors_per_layer": 2, "fit_multiple": 16},
    192: {"strides": (4,), "anchors_per_layer": 1, "fit_multiple": None},
}


def ssd_anchors(input_size: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Anchor centres (x, y) as fractions of the input's width and height, in the order the model emits its
    regressions. `input_size` is the published input (it picks the layout); `shape` (height, width) is the
    input the model runs at where that is not input_size square."""
    options = ANCHOR_OPTIONS[input_size]
    height, width = shape or (input_size, input_size)
    strides = options["strides"]
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        repeats = 0
        while layer < len(strides) and strides[layer] == stride:
            repeats += options["anchors_per_layer"]
            layer += 1
        rows, cols = int(np.ceil(height / stride)), int(np.ceil(width / stride))
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grid = np.stack([(xs + 0.5) / cols, (ys + 0.5) / rows], axis=-1).reshape(-1, 1, 2)
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

    Returns (box, keypoints, score) per kept face, best first.
    """
    rows = np.concatenate([boxes, keypoints.reshape(len(boxes), -1)], axis=1)
    return [(row[:4], row[4:].reshape(-1, 2), score) for row, score in _blend(rows, scores, iou_threshold)]


def _blend(rows: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[tuple[np.ndarray, float]]:
    """weighted_nms over rows that hold a box in their first 4 columns and keypoints after it.

    Box and keypoints blend as one row, and the candidates are few (those above the score
    threshold), so one IoU matrix up front is cheaper than an IoU pass per kept face.
    """
    order = np.argsort(-scores)
    rows, scores = rows[order], scores[order]
    overlaps = iou_matrix(rows[:, :4]) >= iou_threshold
    free = np.ones(len(scores), dtype=bool)
    kept = []
    for first in range(len(scores)):
        if not free[first]:
            continue
        members = overlaps[first] & free
        members[first] = True  # a degenerate (zero-area) box still forms its own group
        free &= ~members
        weights = scores[members]
        kept.append(((rows[members] * weights[:, None]).sum(axis=0) / weights.sum(), float(scores[first])))
    return kept


def to_model_range(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 pixels -> the detector's [-1, 1] float input."""
    out = np.multiply(pixels, np.float32(1 / 127.5), out=out, dtype=np.float32)
    out -= np.float32(1.0)
    return out


def _logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability))


@dataclass(frozen=True)
class _Layout:
    """Where one frame shape goes in the model input, and how detections come back to frame pixels."""

    frame: tuple[int, int]  # height, width of the frames it is for
    input: tuple[int, int]  # height, width of the model input
    placed: tuple[int, int, int, int]  # top, left, height, width of the shrunk frame inside the input
    box: int  # odd whole-number shrink factor done as a box blur, else 0 (cv2.resize)
    side: float  # the frame's long side, which spans input_size
    pad_x: float  # input padding left and above the frame, in frame pixels
    pad_y: float
    to_unit: np.ndarray  # (16,) divides regressions (input pixels) into fractions of the input width / height
    offsets: np.ndarray  # (anchors, 16) each anchor's centre, on the box centre and on every keypoint
    to_frame: np.ndarray  # (16,) fractions of the input -> frame pixels (before the padding shift)
    shift: np.ndarray  # (16,) the padding, in frame pixels


class FaceDetector:
    """Runs a BlazeFace artifact on whole frames and returns faces in frame pixels.

    `fit_input` runs the model on an input shaped like a landscape frame (see _input_shape) instead of the
    published square letterbox, where the backend can resize the model: a 4:3 frame then fills a 128x96
    input rather than 96 rows of a 128x128 one, a quarter less work at the same scale. The export checks
    that this finds what the square letterbox finds.

    `input_width` runs a fully convolutional model (short-range BlazeFace) at a wider input than it was
    published at: the network's sizes are in input pixels, so at 352 px a face of 6% of the frame width is
    the 21 px face it finds at 128 px only when it fills 16% of the frame. Room cameras need this.
    """

    def __init__(self, model: Backend, score_threshold: float = 0.5, iou_threshold: float = 0.3,
                 min_face_size: int = 24, max_faces: int = 5, fit_input: bool = False,
                 input_width: int | None = None):
        self.model = model
        self.native_size = int(model.input_shape[1])  # the published input, which the anchor layout is for
        if self.native_size not in ANCHOR_OPTIONS:
            raise ValueError(f"no BlazeFace anchor layout for a {self.native_size}px input")
        multiple = ANCHOR_OPTIONS[self.native_size]["fit_multiple"]
        self.input_size = input_width or self.native_size
        if self.input_size != self.native_size:
            name = model.manifest.artifact_path.name
            if not multiple:
                raise EdgeError(f"{name} runs only at its own {self.native_size} px input (fixed reshapes in the "
                                f"graph); use detector.int8.tflite for a wider detector input, or width 0")
            if self.input_size % multiple:
                raise EdgeError(f"a detector input width of {self.input_size} px is not a multiple of {multiple}, "
                                f"the largest stride of {name}; use e.g. {self.input_size // multiple * multiple}")
            if not model.prepare((1, self.input_size, self.input_size, 3)):
                raise EdgeError(f"the {model.key} backend cannot resize {name} to {self.input_size} px; use the "
                                "TFLite artifact (LiteRT resizes it) or the model's own input width (0)")
        self.fit_multiple = multiple if fit_input else None
        self.iou_threshold = iou_threshold
        self.min_face_size = min_face_size
        self.max_faces = max_faces
        self.set_score_threshold(score_threshold)
        # An int8 model's input is written straight from the uint8 pixels through a 256-entry table that
        # holds, per pixel value, exactly what quantizing the float path's value gives (no float frame).
        quantization = model.input_quantization
        self._table = pixel_table(to_model_range, quantization)
        self._padding = -1.0 if self._table is None else self._table[0]  # pixel 0 is -1.0, the padding value
        self._dtype = np.float32 if quantization is None else quantization[2]
        self._input = np.empty(0, self._dtype)  # the model input, reused; its padding stays between frames
        self._layout: _Layout | None = None  # geometry of the last frame shape

    def set_score_threshold(self, score_threshold: float) -> None:
        """The minimum detector score (also changed live by a hub's control)."""
        self.score_threshold = score_threshold
        # Anchors whose raw logit is below this cannot reach score_threshold, so the sigmoid and the
        # decoding only run on the few that can. The margin keeps the exact float64 test the final word.
        self._logit_floor = _logit(score_threshold) - 1e-3 if 0.0 < score_threshold < 1.0 else -math.inf

    def _input_shape(self, height: int, width: int) -> tuple[int, int]:
        """The model input for a frame shape: fitted where allowed and possible, else square.

        Only landscape frames are fitted, and only in height. A frame whose shrunk height is a whole number
        of the largest stride fills the input exactly (4:3: 128x96); any other gets at least half a stride of
        padding above and below (16:9: 72 rows in 96). At export, on the published detector's check images,
        those two found 100% and 98.6 to 99.3% of its faces; with 4 rows of padding 16:9 lost 5% with the
        int8 model, and portrait frames fitted in width lost 7% (faces cut by the frame's side), so portrait
        frames run square."""
        size, multiple = self.input_size, self.fit_multiple
        if not multiple or height > width:
            return size, size
        rows = max(1, round(height * size / width))
        if rows % multiple:
            rows = math.ceil((rows + multiple) / multiple) * multiple
        fitted = (rows, size)
        if rows >= size or not self.model.prepare((1, *fitted, 3)):
            return size, size
        outputs = self.model.run(np.full((1, *fitted, 3), self._padding, self._dtype))
        if max(output.shape[1] for output in outputs) != len(ssd_anchors(self.native_size, fitted)):
            return size, size  # the model did not keep its anchor grid at this size: run it square
        return fitted

    def model_input(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the model input this detector runs frames of this shape at."""
        layout = self._layout
        if layout is None or layout.frame != (height, width):
            layout = self._geometry(height, width)
        return layout.input

    def _geometry(self, height: int, width: int) -> _Layout:
        """Letterbox placement for a frame shape, worked out once per shape."""
        side = max(height, width)
        size = self.input_size
        in_h, in_w = self._input_shape(height, width)
        new_w, new_h = max(1, round(width * size / side)), max(1, round(height * size / side))
        top, left = (in_h - new_h) // 2, (in_w - new_w) // 2
        # An odd whole-number shrink factor makes INTER_AREA a plain k x k box average; a box blur
        # sampled at the block centres gives the same pixels (odd k rounds the same way) at half the cost.
        factor = side // size
        box = factor if (factor >= 3 and factor % 2 and side == factor * size and width == new_w * factor
                         and height == new_h * factor) else 0
        anchors = ssd_anchors(self.native_size, (in_h, in_w))
        offsets = np.zeros((len(anchors), 16), np.float32)
        offsets[:, 0:2] = anchors
        offsets[:, 4:16] = np.tile(anchors, 6)
        pad_x, pad_y = left * side / size, top * side / size
        return _Layout(frame=(height, width), input=(in_h, in_w), placed=(top, left, new_h, new_w), box=box,
                       side=float(side), pad_x=pad_x, pad_y=pad_y,
                       to_unit=np.array([in_w, in_h] * 8, np.float32), offsets=offsets,
                       to_frame=np.array([side * in_w / size, side * in_h / size] * 8),
                       shift=np.array([pad_x, pad_y] * 8))

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, _Layout]:
        """Write the letterboxed, [-1, 1]-scaled (or quantized) frame into the reusable input buffer."""
        import cv2

        height, width = rgb.shape[:2]
        layout = self._layout
        if layout is None or layout.frame != (height, width):
            layout = self._layout = self._geometry(height, width)
            self._input = np.full((1, *layout.input, 3), self._padding, dtype=self._dtype)
        top, left, new_h, new_w = layout.placed
        if layout.box:
            half = layout.box // 2
            small = cv2.blur(rgb, (layout.box, layout.box))[half::layout.box, half::layout.box]
        else:
            interpolation = cv2.INTER_AREA if layout.side > self.input_size else cv2.INTER_LINEAR
            small = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
        region = self._input[0, top:top + new_h, left:left + new_w]
        if self._table is not None:
            region[...] = cv2.LUT(small, self._table)
        else:
            to_model_range(small, out=region)
        return self._input, layout

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Letterbox to the model input scaled to [-1, 1] (or quantized); return the mapping back.

        The frame is shrunk first and the small result padded, so the costly area resampling
        never touches padding (returned offsets are in source pixels). The tensor is a copy the
        caller may keep; `detect` itself reuses one buffer.
        """
        tensor, layout = self._letterbox(rgb)
        return tensor.copy(), layout.side, layout.pad_x, layout.pad_y

    def detect(self, rgb: np.ndarray) -> list[Face]:
        tensor, layout = self._letterbox(rgb)
        regressors, classificators = self.model.run(tensor)[:2]
        if regressors.shape[-1] == 1:  # output order differs between converters
            regressors, classificators = classificators, regressors
        logits = classificators.reshape(-1)
        candidates = np.flatnonzero(logits >= self._logit_floor)
        if candidates.size == 0:
            return []
        # float64 like the scores the thresholds are set in; the floor of -100 only matters (avoids an
        # overflow in exp) when score_threshold is 0 and every anchor is a candidate
        scores = 1.0 / (1.0 + np.exp(-np.maximum(logits[candidates], -100.0, dtype=np.float64)))
        passed = scores >= self.score_threshold
        candidates, scores = candidates[passed], scores[passed]
        if candidates.size == 0:
            return []
        # regressions are in input pixels relative to the anchor: box centre, size, then 6 keypoints
        rows = regressors.reshape(-1, regressors.shape[-1])[candidates, :16] / layout.to_unit
        rows += layout.offsets[candidates]
        half = rows[:, 2:4] / 2.0
        rows[:, 2:4] = rows[:, 0:2] + half
        rows[:, 0:2] -= half
        faces = []
        for row, score in _blend(rows, scores, self.iou_threshold):
            frame_row = row * layout.to_frame - layout.shift
            x0, y0, x1, y1 = frame_row[:4].tolist()
            if min(x1 - x0, y1 - y0) >= self.min_face_size:
                faces.append(Face((x0, y0, x1, y1), score, frame_row[4:].reshape(6, 2).astype(np.float32)))
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
