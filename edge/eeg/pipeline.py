"""EEG source chunks -> filtered sliding windows -> features -> valence/arousal events.

`EEGPipeline` turns chunks from `edge.sources.lsl.LSLSource` into `edge.events.Event`s with
modality "eeg", one per window step (default every 0.5 s over 4 s windows). Without a trained
model it reports the training-free index of `edge.eeg.estimator` (label null, estimator "index");
a classifier (feature vector -> probabilities) can be plugged in later. Gaps longer than
eeg.reset_on_gap_s restart filters and windows so no window spans missing data.
`extract_recording_features` runs the very same chain over a recording for training.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.eeg.config import EEGConfig
from edge.eeg.estimator import ClassifierEstimator, IndexEstimator, IndexResult
from edge.eeg.features import FeatureSet, extract_features
from edge.eeg.filters import Preprocessor
from edge.eeg.quality import Assessment, assess
from edge.eeg.windows import SlidingWindow
from edge.errors import EdgeError
from edge.events import Event, utc_timestamp

log = logging.getLogger(__name__)


@dataclass
class WindowResult:
    """One analysed window."""

    times: np.ndarray  # LSL timestamps of its samples
    features: FeatureSet
    assessment: Assessment
    received: float  # local LSL clock when its last chunk arrived

    @property
    def rejected(self) -> bool:
        return self.assessment.rejected


class EEGPipeline:
    """Stateful EEG processing for one stream; call `process_chunk` or let `run` read the source."""

    def __init__(self, config: EEGConfig | None = None, source=None, device_id: str = "edge",
                 track_id: str | None = None, classifier: ClassifierEstimator | None = None,
                 model_id: str = "eeg-frontal-index", model_sha256: str = "",
                 clock: Callable[[], float] | None = None):
        self.config = (config or EEGConfig()).validate()
        self.source = source
        self.device_id = device_id
        self.track_id = track_id
        self.classifier = classifier
        self.model_id, self.model_sha256 = model_id, model_sha256
        self.index = IndexEstimator(self.config)
        self._clock = clock or _lsl_clock()
        self._columns: list[int] | None = None
        self._rate = 0.0
        self._pre: Preprocessor | None = None
        self._window: SlidingWindow | None = None
        self._last_classified: tuple | None = None
        self._recent_rejects: deque[bool] = deque(maxlen=120)
        self._counts = {"windows": 0, "rejected": 0, "resets": 0, "errors": 0, "events": 0}
        self._last: WindowResult | None = None
        self._last_index = IndexResult(0.0, 0.0, True, 0.0, 0.0, 0.0)
        self._last_event_at: float | None = None
        self._last_latency_ms: float | None = None

    # -- stream set-up -----------------------------------------------------------------------
    def set_stream(self, labels: Sequence[str], rate: float) -> None:
        """Map the configured channels onto the stream's columns and (re)build the filters."""
        labels = list(labels)
        missing = [c for c in self.config.channels if c not in labels]
        if missing:
            raise EdgeError(f"EEG stream channels {labels} lack {missing} from eeg.channels; set eeg.channels "
                            "to labels the headband sends (Muse: TP9, AF7, AF8, TP10)")
        if not rate > 0:
            raise EdgeError("the EEG stream declares an irregular rate; a Muse streams at 256 Hz")
        self._columns = [labels.index(c) for c in self.config.channels]
        cfg, n = self.config, len(self.config.channels)
        if rate != self._rate or self._pre is None:
            self._rate = float(rate)
            self._pre = Preprocessor(rate, n, cfg.bandpass_low_hz, cfg.bandpass_high_hz, cfg.filter_order,
                                     cfg.notch_hz, cfg.notch_q)
            self._window = SlidingWindow(n, round(cfg.window_s * rate), max(1, round(cfg.hop_s * rate)))
        self.reset_stream()

    def reset_stream(self) -> None:
        """Start filters and windows afresh (new stream or a gap); the user baseline is kept."""
        if self._pre is not None:
            self._pre.reset()
            self._window.reset()
            self._counts["resets"] += 1

    # -- processing ------------------------------------------------------------------------
    def analyse_chunk(self, chunk) -> list[WindowResult]:
        """Windows completed by one chunk (no estimator update)."""
        if chunk.new_stream or self._columns is None:
            description = getattr(self.source, "description", None)
            if description is not None:
                self.set_stream(description.labels, description.nominal_rate)
            elif self._columns is None:
                raise EdgeError("EEGPipeline needs the stream's channel labels: give it the LSL source or "
                                "call set_stream(labels, rate) first")
            else:
                self.reset_stream()  # a new stream with the labels set by set_stream
        data = np.asarray(chunk.data, dtype=np.float64)
        times = np.asarray(chunk.timestamps, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] != len(times) or data.shape[1] <= max(self._columns):
            raise EdgeError(f"EEG chunk of shape {data.shape} does not match the stream's channels")
        cuts = [g.index for g in chunk.gaps if g.seconds > self.config.reset_on_gap_s and g.index > 0]
        resets_first = any(g.index == 0 and g.seconds > self.config.reset_on_gap_s for g in chunk.gaps)
        results = []
        for k, (start, end) in enumerate(zip([0] + cuts, cuts + [len(times)])):
            if (k == 0 and resets_first and not chunk.new_stream) or k > 0:
                self.reset_stream()
            if end <= start:
                continue
            raw = data[start:end, self._columns]
            filtered, bad = self._pre.process(raw)
            for w_times, w_raw, w_filtered, w_bad in self._window.push(times[start:end], raw, filtered, bad):
                results.append(self._analyse(w_times, w_raw, w_filtered, w_bad, chunk.received))
        return results

    def _analyse(self, times, raw, filtered, bad, received) -> WindowResult:
        cfg = self.config
        features = extract_features(filtered, self._rate, cfg.channels, cfg.left_frontal, cfg.right_frontal,
                                    welch_segment=max(8, round(cfg.welch_segment_s * self._rate)))
        assessment = assess(raw, filtered, bad, cfg, self._rate)
        # Window-input classifiers (TSception) read the filtered window itself, not just its features.
        features.extra.update(filtered=filtered, rate=self._rate)
        self._counts["windows"] += 1
        self._counts["rejected"] += int(assessment.rejected)
        self._recent_rejects.append(assessment.rejected)
        result = WindowResult(times, features, assessment, received)
        self._last = result
        return result

    def process_chunk(self, chunk) -> list[Event]:
        """Events for the windows a chunk completes."""
        return [self.make_event(result) for result in self.analyse_chunk(chunk)]

    def make_event(self, result: WindowResult) -> Event:
        cfg = self.config
        index = self.index.update(result.features, accepted=not result.rejected)
        self._last_index = index
        label, confidence, probabilities = None, 0.0, {}
        valence, arousal, estimator = index.valence, index.arousal, "index"
        if self.classifier is not None:
            estimator = "classifier"
            if not result.rejected:
                self._last_classified = self.classifier.classify(result.features)
            if self._last_classified is not None:
                label, confidence, probabilities, valence, arousal = self._last_classified
        capture = float(result.times[-1])
        now = self._clock()
        latency = now - capture
        if not 0.0 <= latency < 5.0:
            # Timestamps not comparable with our clock (sped-up replay, skewed sender): processing time only.
            latency = max(0.0, now - result.received)
        self._last_latency_ms = latency * 1000.0
        self._last_event_at = time.monotonic()
        self._counts["events"] += 1
        a = result.assessment
        extra: dict[str, Any] = {
            "quality": {name: q.to_dict() for name, q in a.channels.items()},
            "asymmetry": round(result.features.alpha_asymmetry, 4),
            "beta_alpha_log_ratio": round(result.features.beta_alpha_log_ratio, 4),
            "band_power_uv2": result.features.band_summary(),
            "rejected": a.rejected,
            "reason": a.reason,
            "reasons": a.reasons,
            "warming_up": index.warming_up,
            "warmup_progress": round(index.warmup_progress, 3),
            "index_z": {"valence": round(index.valence_z, 3), "arousal": round(index.arousal_z, 3)},
            "window_s": cfg.window_s,
        }
        return Event(
            device_id=self.device_id, modality="eeg", kind="emotion",
            track_id=self.track_id or self._stream_name(), label=label,
            confidence=float(np.clip(confidence, 0.0, 1.0)), probabilities=probabilities,
            valence=float(np.clip(valence, -1.0, 1.0)), arousal=float(np.clip(arousal, -1.0, 1.0)),
            timestamp=utc_timestamp(capture + (time.time() - now)),
            model={"id": self.model_id, "sha256": self.model_sha256, "estimator": estimator},
            latency_ms=self._last_latency_ms, extra=extra)

    def _stream_name(self) -> str:
        description = getattr(self.source, "description", None)
        return description.name if description is not None else "eeg"

    # -- long-running loop -----------------------------------------------------------------
    def run(self, publish: Callable[[Event], None], stop: threading.Event, read_timeout: float = 0.5) -> None:
        """Read the source and publish events until `stop`; configuration problems raise EdgeError."""
        if self.source is None:
            raise EdgeError("EEGPipeline.run needs an LSL source")
        while not stop.is_set():
            chunk = self.source.read(timeout=read_timeout)
            if chunk is None:
                continue
            try:
                events = self.process_chunk(chunk)
            except EdgeError:
                raise
            except Exception:
                self._counts["errors"] += 1
                log.exception("EEG chunk processing failed; restarting the filters")
                self.reset_stream()
                continue
            for event in events:
                try:
                    publish(event)
                except Exception:
                    self._counts["errors"] += 1
                    log.exception("publishing an EEG event failed")

    def health(self) -> dict[str, Any]:
        """Signal quality, rejection rate, warm-up and source state for the health topic."""
        last = self._last
        recent = list(self._recent_rejects)
        return {
            **self._counts,
            "source": self.source.stats() if self.source is not None else None,
            "quality": {n: q.to_dict() for n, q in last.assessment.channels.items()} if last else None,
            "last_reason": last.assessment.reason if last else None,
            "rejected_recent_fraction": round(sum(recent) / len(recent), 3) if recent else None,
            "warming_up": self._last_index.warming_up,
            "warmup_progress": round(self._last_index.warmup_progress, 3),
            "estimator": "classifier" if self.classifier is not None else "index",
            "last_latency_ms": round(self._last_latency_ms, 2) if self._last_latency_ms is not None else None,
            "last_event_age_s": (round(time.monotonic() - self._last_event_at, 3)
                                 if self._last_event_at is not None else None),
        }


def _lsl_clock() -> Callable[[], float]:
    from edge.sources.lsl import load_pylsl

    return load_pylsl().local_clock


@dataclass
class _OfflineChunk:
    timestamps: np.ndarray
    data: np.ndarray
    received: float
    gaps: list
    new_stream: bool = False


@dataclass
class _OfflineGap:
    index: int
    seconds: float


def extract_recording_features(data: np.ndarray, timestamps: np.ndarray, labels: Sequence[str], rate: float,
                               config: EEGConfig | None = None, block: int = 256) -> list[WindowResult]:
    """Windows of a whole recording through the live chain (same filters, windows, checks, features).

    Timestamp steps longer than eeg.reset_on_gap_s restart the filters exactly as live gaps do.
    """
    config = (config or EEGConfig()).validate()
    pipeline = EEGPipeline(config, clock=lambda: 0.0)
    pipeline.set_stream(labels, rate)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    results: list[WindowResult] = []
    steps = np.diff(timestamps, prepend=timestamps[0] if len(timestamps) else 0.0)
    for start in range(0, len(timestamps), block):
        end = min(start + block, len(timestamps))
        gaps = [_OfflineGap(int(i), float(steps[start + i]))
                for i in np.flatnonzero(steps[start:end] > config.reset_on_gap_s)]
        chunk = _OfflineChunk(timestamps[start:end], data[start:end], float(timestamps[end - 1]), gaps)
        results.extend(pipeline.analyse_chunk(chunk))
    return results
