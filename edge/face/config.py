"""The [face] settings, importable without OpenCV or a model runtime (check-config, defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from ..backends import check_backend
from ..backends.onnxrt import DEFAULT_PROVIDERS, check_providers
from ..errors import EdgeError


@dataclass
class FaceConfig:
    SECTION: ClassVar[str] = "face"
    enabled: bool = True  # run the face modality
    models: str = "models/face"  # model directory written by `emotion-export face`
    # detector artifact in `models`: the int8 copy of BlazeFace (int8 kernels, ARM's fast path; checked against
    # the published model at export), or "detector.fp32.tflite" / "detector.fp32.onnx" for the published float one
    detector: str = "detector.int8.tflite"
    # "fit": on a landscape frame the detector's input takes the frame's shape (128 px wide, a multiple of 16
    # high), so a 4:3 camera runs BlazeFace on 128x96 pixels instead of a 128x128 letterbox with 32 rows of
    # padding, a quarter less detector work (16:9 also gets 128x96, with padding; checked against the square
    # letterbox at export); "square": the published letterbox. Portrait frames, and backends that cannot resize
    # a model (fixed-shape ONNX, TensorRT engines), run square either way
    detector_input: str = "fit"
    # the detector's input width in pixels; 0 = the model's own (128 short-range, 192 full-range). Wider finds
    # smaller faces at more cost: the short-range model at 352 finds faces of 6% of the frame width, as a room
    # camera sees people 2 to 4 m away (living-room profile). Short-range on LiteRT only, a multiple of 16
    detector_width: int = 0
    emotion: str = "emotion.int8.tflite"  # emotion artifact in `models` (any .tflite or .onnx the export wrote)
    backend: str = "auto"  # "auto" (by artifact format), "litert", "onnxruntime" or "tensorrt" (Jetson, .onnx)
    # ONNX Runtime execution providers in order of preference (onnxruntime backend only), e.g.
    # ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"] on a Jetson; ones this
    # onnxruntime build lacks are skipped with a warning, and the one that runs is in the health topic
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    # inference threads per model; 0 = auto: one fewer than the CPU cores, at most 2 (the camera decodes on a
    # core of its own: on a 2-core board 1 thread was faster than 2 in most measured runs)
    threads: int = 0
    score_threshold: float = 0.5  # minimum detector confidence for a face
    iou_threshold: float = 0.3  # overlap above which detections are merged (weighted NMS)
    min_face_size: int = 40  # ignore faces smaller than this many pixels (too small to read an expression)
    max_faces: int = 3  # classify at most this many faces per frame, largest first
    # run detection and classification on every Nth frame; frames in between keep the current tracks
    # (like DeepStream's nvinfer `interval`): 5 to 10 times a second at 15 to 30 fps is faster than expressions
    # change, and leaves CPU for the voice and EEG pipelines on the same board
    infer_every: int = 3
    state_interval_s: float = 1.0  # how often the retained state topic is refreshed (and at once when faces come or go)

    def validate(self) -> None:
        checks = (
            ("threads", isinstance(self.threads, int) and 0 <= self.threads <= 16,
             "a whole number from 1 to 16, or 0 for auto"),
            ("score_threshold", 0 < self.score_threshold < 1, "a number between 0 and 1"),
            ("iou_threshold", 0 < self.iou_threshold < 1, "a number between 0 and 1"),
            ("min_face_size", isinstance(self.min_face_size, int) and self.min_face_size >= 8, "a whole number >= 8"),
            ("max_faces", isinstance(self.max_faces, int) and 1 <= self.max_faces <= 32, "a whole number from 1 to 32"),
            ("infer_every", isinstance(self.infer_every, int) and 1 <= self.infer_every <= 30,
             "a whole number from 1 to 30"),
            ("state_interval_s", self.state_interval_s > 0, "a number of seconds > 0"),
            ("detector_input", self.detector_input in ("fit", "square"), "fit or square"),
            ("detector_width", isinstance(self.detector_width, int) and (self.detector_width == 0 or (
                64 <= self.detector_width <= 1024 and self.detector_width % 16 == 0)),
             "0 (the model's own input) or a multiple of 16 from 64 to 1024"),
        )
        for key, ok, wanted in checks:
            if not ok:
                raise EdgeError(f"face.{key} must be {wanted}, not {getattr(self, key)!r}")
        check_backend("face.backend", self.backend)
        check_providers("face.providers", self.providers)

    def inference_threads(self) -> int:
        """`threads`, with 0 resolved for this machine."""
        if self.threads:
            return self.threads
        return max(1, min(2, (os.cpu_count() or 1) - 1))
