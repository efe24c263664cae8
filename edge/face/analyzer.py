"""Face analyzer: frame -> BlazeFace -> tracked face crops -> emotion CNN -> one observation per face.

Per frame that runs the models (every `infer_every`th): a "start" observation when a face becomes a
track, a "state" observation per tracked face with its raw class probabilities and circumplex
valence/arousal, an "end" observation when a track leaves. Frames in between keep the tracks and give
no observations. Smoothing and events happen downstream, the same for every modality.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..affect import valence_arousal
from ..backends import open_model
from ..backends.base import pixel_table
from ..errors import EdgeError
from ..observation import Observation
from .config import FaceConfig
from .detector import FaceDetector, square_crop_box
from .preprocess import crops_to_batch, to_input_range
from .tracker import FaceTracker, TrackerConfig


class FaceAnalyzer:
    modality = "face"

    def __init__(self, config: FaceConfig, tracker: TrackerConfig | None = None,
                 cache_dir: str | Path | None = None):
        config.validate()
        self.config = config
        models = Path(config.models)
        if not models.is_dir():
            raise EdgeError(f"face.models = {str(models)!r} is not a directory; run `emotion-export face --out "
                            f"{models}` first (or point face.models at an exported model directory)")
        threads = config.inference_threads()
        options = {"providers": config.providers, "cache_dir": cache_dir}
        try:
            self.detector = FaceDetector(
                open_model(models / config.detector, config.backend, threads, **options),
                score_threshold=config.score_threshold, iou_threshold=config.iou_threshold,
                min_face_size=config.min_face_size, max_faces=config.max_faces,
                fit_input=config.detector_input == "fit", input_width=config.detector_width or None)
        except EdgeError as exc:
            if not config.detector_width:
                raise
            raise EdgeError(f"face.detector_width = {config.detector_width}: {exc}") from None
        self.model = open_model(models / config.emotion, config.backend, threads, **options)
        manifest = self.model.manifest
        if manifest.data["task"] != "face_emotion":
            raise EdgeError(f"face.emotion = {config.emotion!r} is a {manifest.data['task']} model, not face_emotion; "
                            "set face.emotion to the export's emotion model (emotion.int8.tflite)")
        self.labels = manifest.labels
        self.preprocessing = manifest.preprocessing
        # an int8 emotion model gets its crops through a lookup table, never as floats
        self._crop_table = pixel_table(lambda pixels: to_input_range(pixels, self.preprocessing),
                                       self.model.input_quantization)
        self.model_info = {"id": manifest.model_id, "sha256": manifest.sha256}
        self.tracker = FaceTracker(tracker)
        self._tracker_config = tracker
        self._boxes: dict[str, list[float]] = {}
        self._frames = 0
        self._frame_size: list[int] = [0, 0]
        self._last_timestamp: float | None = None
        self.timings_ms: dict[str, float] = {}
        self.faces = 0

    def _observation(self, kind: str, track_id: str, timestamp: float, received: float,
                     probs: np.ndarray | None = None, box=None, score: float | None = None) -> Observation:
        extra: dict[str, Any] = {"frame": list(self._frame_size)}
        if box is not None:  # [x, y, width, height] in pixels of the frame
            x0, y0, x1, y1 = (float(v) for v in box)
            extra["box"] = [round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)]
        if probs is None:
            return Observation("face", track_id, timestamp, kind=kind, model=self.model_info, extra=extra,
                               latency_ms=max(0.0, (time.perf_counter() - received) * 1000))
        probabilities = {name: float(p) for name, p in zip(self.labels, probs)}
        valence, arousal = valence_arousal(self.labels, probs)
        return Observation("face", track_id, timestamp, probabilities=probabilities, valence=valence,
                           arousal=arousal, confidence=float(np.max(probs)), quality=score, model=self.model_info,
                           latency_ms=max(0.0, (time.perf_counter() - received) * 1000), extra=extra)

    def process(self, frame) -> list[Observation]:
        """One camera frame (`image` RGB, `timestamp` epoch seconds of capture)."""
        received = time.perf_counter()
        image, timestamp = frame.image, frame.timestamp
        self._frames += 1
        self._last_timestamp = timestamp
        if (self._frames - 1) % self.config.infer_every:
            self.timings_ms = {}
            return []
        self._frame_size = [int(image.shape[1]), int(image.shape[0])]
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
        self.timings_ms, self.faces = timings, len(faces)
        observations = [self._observation("start", track_id, timestamp, received) for track_id in update.started]
        for (track_id, box, face), vector in zip(update.tracks, probs):
            self._boxes[track_id] = box
            observations.append(self._observation("state", track_id, timestamp, received, vector, box,
                                                  float(face.score)))
        for track_id in update.ended:
            observations.append(self._observation("end", track_id, timestamp, received,
                                                  box=self._boxes.pop(track_id, None)))
        return observations

    def reset(self) -> None:
        """The camera was reopened: tracks do not carry over a gap in the video."""
        self.close()
        self.tracker = FaceTracker(self._tracker_config)

    def close(self) -> list[Observation]:
        """End every open track, at the last processed frame's time."""
        now = self._last_timestamp if self._last_timestamp is not None else time.time()
        received = time.perf_counter()
        return [self._observation("end", track_id, now, received, box=self._boxes.pop(track_id, None))
                for track_id in self.tracker.end_all()]

    def health(self) -> dict[str, Any]:
        return {"tracks": len(self.tracker.active_ids), "faces": self.faces}

    def models(self) -> dict[str, dict[str, Any]]:
        return {"face.detector": self.detector.model.describe(), "face.emotion": self.model.describe()}
