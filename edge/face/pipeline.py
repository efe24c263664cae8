"""Face pipeline: frame -> BlazeFace -> tracked face crops -> emotion CNN -> smoothed events.

Events follow the shared schema: `track_start` when a face becomes a track, `emotion` when a
track's smoothed label changes, `track_end` when it leaves. The retained state (what a hub
shows) describes the largest face and is refreshed every `state_interval_s`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..affect import valence_arousal
from ..backends import open_model
from ..backends.base import pixel_table
from ..backends.onnxrt import DEFAULT_PROVIDERS, check_providers
from ..errors import EdgeError
from ..events import Event, utc_timestamp
from ..smoothing import SmootherBank, SmoothingConfig
from .detector import FaceDetector, square_crop_box
from .preprocess import crops_to_batch, to_input_range
from .tracker import FaceTracker, TrackerConfig


@dataclass
class FaceConfig:
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
    state_interval_s: float = 1.0  # how often the retained state topic is refreshed

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
            ("backend", self.backend in ("auto", "litert", "onnxruntime", "tensorrt"),
             "auto, litert, onnxruntime or tensorrt"),
        )
        for key, ok, wanted in checks:
            if not ok:
                raise EdgeError(f"face.{key} must be {wanted}, not {getattr(self, key)!r}")
        check_providers("face.providers", self.providers)

    def inference_threads(self) -> int:
        """`threads`, with 0 resolved for this machine."""
        if self.threads:
            return self.threads
        return max(1, min(2, (os.cpu_count() or 1) - 1))


@dataclass
class FaceResult:
    events: list[Event]
    state: dict[str, Any] | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    faces: int = 0


class FacePipeline:
    def __init__(self, config: FaceConfig, tracker: TrackerConfig | None = None,
                 smoothing: SmoothingConfig | None = None, device_id: str = "edge",
                 cache_dir: str | Path | None = None):
        config.validate()
        self.config = config
        self.device_id = device_id
        models = Path(config.models)
        if not models.is_dir():
            raise EdgeError(f"face.models = {str(models)!r} is not a directory; run `emotion-export face --out "
                            f"{models}` first (or point face.models at an exported model directory)")
        threads = config.inference_threads()
        options = {"providers": config.providers, "cache_dir": cache_dir}
        self.detector = FaceDetector(
            open_model(models / config.detector, config.backend, threads, **options),
            score_threshold=config.score_threshold, iou_threshold=config.iou_threshold,
            min_face_size=config.min_face_size, max_faces=config.max_faces,
            fit_input=config.detector_input == "fit")
        self.model = open_model(models / config.emotion, config.backend, threads, **options)
        manifest = self.model.manifest
        if manifest.data["task"] != "face_emotion":
            raise EdgeError(f"face.emotion = {config.emotion!r} is a {manifest.data['task']} model, not face_emotion")
        self.labels = manifest.labels
        self.preprocessing = manifest.preprocessing
        # an int8 emotion model gets its crops through a lookup table, never as floats
        self._crop_table = pixel_table(lambda pixels: to_input_range(pixels, self.preprocessing),
                                       self.model.input_quantization)
        self.model_info = {"id": manifest.model_id, "sha256": manifest.sha256, "estimator": "classifier"}
        self.tracker = FaceTracker(tracker)
        self.smoothers = SmootherBank(self.labels, smoothing)
        self._last_state = -math.inf
        self._tracks: dict[str, dict[str, Any]] = {}
        self._frames = 0
        self._last_timestamp: float | None = None

    def _event(self, kind: str, track_id: str, timestamp: float, latency_ms: float,
               probs: dict[str, float] | None = None, label: str | None = None, box=None) -> Event:
        probabilities = probs or {}
        valence, arousal = valence_arousal(list(probabilities), list(probabilities.values())) if probs else (0.0, 0.0)
        return Event(
            device_id=self.device_id, modality="face", kind=kind, track_id=track_id, label=label,
            confidence=float(probabilities.get(label, 0.0)) if label else 0.0, probabilities=probabilities,
            valence=valence, arousal=arousal, timestamp=utc_timestamp(timestamp), model=self.model_info,
            latency_ms=max(0.0, latency_ms),
            extra={"box": [round(float(v), 1) for v in box]} if box is not None else {},
        )

    def process(self, image: np.ndarray, timestamp: float, received: float | None = None) -> FaceResult:
        """One RGB frame captured at `timestamp` (epoch seconds); `received` is its perf_counter arrival."""
        received = time.perf_counter() if received is None else received
        self._frames += 1
        self._last_timestamp = timestamp
        if (self._frames - 1) % self.config.infer_every:
            state = None
            if timestamp - self._last_state >= self.config.state_interval_s:
                self._last_state = timestamp
                state = self.state(timestamp)
            return FaceResult([], state, {}, len(self.tracker.active_ids))  # no model ran: no stage timings
        timings = {}
        start = time.perf_counter()
        faces = self.detector.detect(image)
        faces.sort(key=lambda face: -face.width * face.height)
        timings["detect"] = (time.perf_counter() - start) * 1000
        update = self.tracker.update([face.box for face in faces], faces, t=timestamp)
        start = time.perf_counter()
        probs = np.empty((0, len(self.labels)), np.float32)
        if update.tracks:
            crops = []
            for _, _, face in update.tracks:
                x0, y0, x1, y1 = square_crop_box(face, image.shape, self.preprocessing["crop_margin"])
                crops.append(image[y0:y1, x0:x1])
            probs = self.model.predict(crops_to_batch(crops, self.preprocessing, self._crop_table))
        timings["classify"] = (time.perf_counter() - start) * 1000
        latency = lambda: (time.perf_counter() - received) * 1000  # noqa: E731
        events = []
        for track_id in update.started:
            events.append(self._event("track_start", track_id, timestamp, latency()))
        for (track_id, box, _), vector in zip(update.tracks, probs):
            smoothed, label, changed = self.smoothers.update(track_id, vector, timestamp)
            distribution = {name: float(p) for name, p in zip(self.labels, smoothed)}
            self._tracks[track_id] = {"label": label, "probs": distribution, "box": box}
            if changed and label is not None:
                events.append(self._event("emotion", track_id, timestamp, latency(), distribution, label, box))
        for track_id in update.ended:
            self.smoothers.drop(track_id)
            last = self._tracks.pop(track_id, None)
            events.append(self._event("track_end", track_id, timestamp, latency(),
                                      box=last["box"] if last else None))
        state = None
        if timestamp - self._last_state >= self.config.state_interval_s or update.started or update.ended:
            self._last_state = timestamp
            state = self.state(timestamp)
        return FaceResult(events, state, timings, len(faces))

    def state(self, timestamp: float) -> dict[str, Any]:
        """Retained state: the largest tracked face's smoothed emotion, or none."""
        active = [(tid, info) for tid, info in self._tracks.items() if tid in self.tracker.active_ids]
        base = {"timestamp": utc_timestamp(timestamp), "tracks": len(active), "model": self.model_info["id"]}
        labelled = [(tid, info) for tid, info in active if info["label"]]
        if not labelled:
            return {**base, "label": None, "confidence": 0.0, "valence": 0.0, "arousal": 0.0, "track_id": None}
        track_id, info = max(labelled, key=lambda item: (item[1]["box"][2] - item[1]["box"][0]) *
                             (item[1]["box"][3] - item[1]["box"][1]))
        valence, arousal = valence_arousal(list(info["probs"]), list(info["probs"].values()))
        return {**base, "label": info["label"], "confidence": round(info["probs"][info["label"]], 4),
                "valence": round(valence, 4), "arousal": round(arousal, 4), "track_id": track_id}

    def close(self) -> list[Event]:
        """End every open track (on shutdown or when the camera ends), at the last processed frame's time."""
        now = self._last_timestamp if self._last_timestamp is not None else time.time()
        events = []
        for track_id in self.tracker.end_all():
            self.smoothers.drop(track_id)
            last = self._tracks.pop(track_id, None)
            events.append(self._event("track_end", track_id, now, 0.0, box=last["box"] if last else None))
        return events
