"""The EEG analysis chain: source chunks -> filtered sliding windows -> artefact checks -> band features.

`EEGPipeline` is the one chain every EEG consumer shares: the live analyzer (`edge.eeg.analyzer.EEGAnalyzer`,
which adds the estimator and makes observations), calibration and training (`extract_recording_features`
over a recording). It makes no events, reads no source and runs no loop: the runtime's worker does that.
Gaps longer than eeg.reset_on_gap_s restart filters and windows so no window spans missing data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.eeg.config import EEGConfig
from edge.eeg.features import FeatureSet, extract_features
from edge.eeg.filters import Preprocessor
from edge.eeg.quality import Assessment, assess
from edge.eeg.windows import SlidingWindow
from edge.errors import EdgeError


@dataclass
class WindowResult:
    """One analysed window."""

    times: np.ndarray  # timestamps of its samples, in the chunks' clock
    features: FeatureSet
    assessment: Assessment

    @property
    def rejected(self) -> bool:
        return self.assessment.rejected


class EEGPipeline:
    """Filters, windows, checks and features for one stream: `set_stream`, then `analyse_chunk` per chunk."""

    def __init__(self, config: EEGConfig | None = None):
        self.config = (config or EEGConfig()).validate()
        self._columns: list[int] | None = None
        self._rate = 0.0
        self._pre: Preprocessor | None = None
        self._window: SlidingWindow | None = None
        self._counts = {"windows": 0, "rejected": 0, "resets": 0}

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

    def analyse_chunk(self, chunk) -> list[WindowResult]:
        """Windows completed by one chunk (its timestamps, data, gaps and new_stream, as LSLSource gives them)."""
        if self._columns is None:
            raise EdgeError("EEGPipeline needs the stream's channel labels and rate: call set_stream(labels, rate) "
                            "first")
        if chunk.new_stream:
            self.reset_stream()
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
                results.append(self._analyse(w_times, w_raw, w_filtered, w_bad))
        return results

    def _analyse(self, times, raw, filtered, bad) -> WindowResult:
        cfg = self.config
        features = extract_features(filtered, self._rate, cfg.channels, cfg.left_frontal, cfg.right_frontal,
                                    welch_segment=max(8, round(cfg.welch_segment_s * self._rate)))
        assessment = assess(raw, filtered, bad, cfg, self._rate)
        # Window-input classifiers (TSception) read the filtered window itself, not just its features.
        features.extra.update(filtered=filtered, rate=self._rate)
        self._counts["windows"] += 1
        self._counts["rejected"] += int(assessment.rejected)
        return WindowResult(times, features, assessment)


@dataclass
class _OfflineChunk:
    timestamps: np.ndarray
    data: np.ndarray
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
    pipeline = EEGPipeline(config)
    pipeline.set_stream(labels, rate)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    results: list[WindowResult] = []
    steps = np.diff(timestamps, prepend=timestamps[0] if len(timestamps) else 0.0)
    for start in range(0, len(timestamps), block):
        end = min(start + block, len(timestamps))
        gaps = [_OfflineGap(int(i), float(steps[start + i]))
                for i in np.flatnonzero(steps[start:end] > config.reset_on_gap_s)]
        chunk = _OfflineChunk(timestamps[start:end], data[start:end], gaps)
        results.extend(pipeline.analyse_chunk(chunk))
    return results
