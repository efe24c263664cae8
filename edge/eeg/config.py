"""Settings of the EEG processing chain, the `[eeg]` table of the device config."""

from __future__ import annotations

from dataclasses import dataclass

from edge.backends import check_backend
from edge.backends.onnxrt import DEFAULT_PROVIDERS, check_providers
from edge.eeg import MUSE_CHANNELS
from edge.errors import EdgeError


@dataclass
class EEGConfig:
    """Filtering, windowing, artifact rejection and the training-free index (section `eeg`)."""

    # Run the EEG modality (a Muse or any EEG stream over Lab Streaming Layer, see [lsl]).
    enabled: bool = False
    # Per-wearer model from `emotion-edge calibrate`: "auto" = <device.data_dir>/eeg/calibration.json when it
    # exists (and eeg.model is ""), "off" = never, or the path of a calibration.json.
    calibration: str = "auto"
    # Trained classifier artifact from `emotion-export train-eeg` (.tflite/.onnx); "" = the calibration if there
    # is one, else the training-free index.
    model: str = ""
    # Backend for `model`: "auto" (by artifact format), "litert", "onnxruntime" or "tensorrt".
    backend: str = "auto"
    # ONNX Runtime execution providers for `model`, in order of preference (onnxruntime backend only).
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    # Seconds between EEG events on the event topic (the retained state is updated every window); a trained
    # classifier's label change is published at once.
    event_interval_s: float = 5.0
    # Channels analysed, by stream label; the Muse "Right AUX" channel is left out unless listed here.
    channels: tuple[str, ...] = MUSE_CHANNELS
    # Left and right frontal channels for alpha asymmetry (valence) and beta/alpha (arousal).
    left_frontal: str = "AF7"
    right_frontal: str = "AF8"
    # Channels that must be usable; a flat/saturated/noisy/invalid one rejects the window.
    required_channels: tuple[str, ...] = ("AF7", "AF8")
    # Channels checked for blinks (eye movements show up frontally).
    blink_channels: tuple[str, ...] = ("AF7", "AF8")
    # Channels checked for jaw clenches (muscle activity shows up temporally).
    jaw_channels: tuple[str, ...] = ("TP9", "TP10")
    # Band-pass edges in Hz and Butterworth order (even) of each edge.
    bandpass_low_hz: float = 1.0
    bandpass_high_hz: float = 45.0
    filter_order: int = 4
    # Mains frequency to notch out: 50 (Europe, most of Asia) or 60 (Americas); 0 turns it off.
    notch_hz: float = 50.0
    # Notch quality: -3 dB bandwidth is notch_hz / notch_q.
    notch_q: float = 30.0
    # Analysis window length and the step between windows, in seconds (one event per step).
    window_s: float = 4.0
    hop_s: float = 0.5
    # Welch segment length in seconds (frequency resolution 1/welch_segment_s Hz).
    welch_segment_s: float = 1.0
    # A gap in the stream longer than this (s) restarts filters and windows (no window spans it).
    reset_on_gap_s: float = 0.1
    # Raw standard deviation below this (uV) means a flat channel (no contact or dead electrode).
    flat_uv: float = 0.5
    # Raw absolute value at or above this (uV) counts as amplifier saturation.
    saturation_uv: float = 1000.0
    # Fraction of saturated samples in a window that marks the channel saturated.
    saturated_fraction: float = 0.02
    # Filtered standard deviation above this (uV) marks a channel noisy.
    noisy_uv: float = 60.0
    # Filtered frontal deviation from the median above this (uV) is a blink; the window is rejected.
    blink_uv: float = 90.0
    # Temporal 30-45 Hz RMS in any 1 s piece above this (uV) is a jaw clench (muscle); window rejected.
    jaw_uv: float = 8.0
    # Rolling per-user baseline length (s) the index is z-scored against.
    baseline_s: float = 300.0
    # Clean data (s) needed in the baseline before the index is reported (warm-up).
    warmup_s: float = 30.0
    # z-score that maps to tanh(1) ~ 0.76; larger values give a gentler index.
    squash_scale: float = 2.0
    # Feature vector handed to a plugged-in classifier: "de", "psd" or "both".
    classifier_features: str = "de"

    def validate(self) -> EEGConfig:
        """Raise EdgeError naming `eeg.<key>` for the first bad value; returns self."""
        if not self.calibration:
            _bad("calibration", self.calibration, "\"auto\", \"off\" or the path of a calibration.json")
        if self.calibration not in ("auto", "off") and self.model:
            _bad("calibration", self.calibration, f"\"auto\" or \"off\" while eeg.model is set ({self.model!r}): "
                 "choose one of the two")
        check_backend("eeg.backend", self.backend)
        check_providers("eeg.providers", self.providers)
        if not self.event_interval_s > 0:
            _bad("event_interval_s", self.event_interval_s, "a number of seconds > 0")
        self.channels = tuple(self.channels)
        self.required_channels = tuple(self.required_channels)
        self.blink_channels = tuple(self.blink_channels)
        self.jaw_channels = tuple(self.jaw_channels)
        if len(self.channels) < 2 or len(set(self.channels)) != len(self.channels):
            _bad("channels", self.channels, "at least two distinct channel labels, e.g. [\"TP9\", \"AF7\", \"AF8\", \"TP10\"]")
        for key in ("left_frontal", "right_frontal"):
            if getattr(self, key) not in self.channels:
                _bad(key, getattr(self, key), f"one of eeg.channels {list(self.channels)}")
        for key in ("required_channels", "blink_channels", "jaw_channels"):
            missing = [c for c in getattr(self, key) if c not in self.channels]
            if missing:
                _bad(key, getattr(self, key), f"labels from eeg.channels {list(self.channels)} (unknown: {missing})")
        if not 0 < self.bandpass_low_hz < self.bandpass_high_hz:
            _bad("bandpass_low_hz", self.bandpass_low_hz, "a positive frequency below eeg.bandpass_high_hz")
        if self.filter_order not in (2, 4, 6, 8):
            _bad("filter_order", self.filter_order, "2, 4, 6 or 8")
        if self.notch_hz not in (0, 0.0) and not 40 <= self.notch_hz <= 70:
            _bad("notch_hz", self.notch_hz, "50 or 60 (your mains frequency), or 0 to disable")
        if not self.notch_q > 0:
            _bad("notch_q", self.notch_q, "a positive number, e.g. 30")
        if not self.window_s >= 1.0:
            _bad("window_s", self.window_s, "at least 1 second (default 4)")
        if not 0 < self.hop_s <= self.window_s:
            _bad("hop_s", self.hop_s, "a positive step no longer than eeg.window_s (default 0.5)")
        if not 0.25 <= self.welch_segment_s <= self.window_s:
            _bad("welch_segment_s", self.welch_segment_s, "between 0.25 s and eeg.window_s (default 1)")
        for key in ("reset_on_gap_s", "flat_uv", "saturation_uv", "noisy_uv", "blink_uv", "jaw_uv"):
            if not getattr(self, key) > 0:
                _bad(key, getattr(self, key), "a positive number")
        if not 0 < self.saturated_fraction <= 1:
            _bad("saturated_fraction", self.saturated_fraction, "a fraction in (0, 1]")
        if not self.baseline_s >= self.window_s:
            _bad("baseline_s", self.baseline_s, "at least eeg.window_s seconds (default 300)")
        if not 0 <= self.warmup_s <= self.baseline_s:
            _bad("warmup_s", self.warmup_s, "between 0 and eeg.baseline_s")
        if not self.squash_scale > 0:
            _bad("squash_scale", self.squash_scale, "a positive number (default 2)")
        if self.classifier_features not in ("de", "psd", "both"):
            _bad("classifier_features", self.classifier_features, "\"de\", \"psd\" or \"both\"")
        return self


def _bad(key: str, value, expected: str) -> None:
    raise EdgeError(f"eeg.{key} = {value!r} is not valid: expected {expected}")
