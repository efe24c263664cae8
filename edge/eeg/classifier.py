"""Run an exported EEG model (from `emotion-export train-eeg`) as the EEG analyzer's classifier.

Two kinds of model, told apart by the manifest's `preprocessing.input`:
- "de": a dense network on the window's differential-entropy features (`FeatureSet.vector("de")`,
  channel-major), standardized with the manifest's `standardize.mean` / `standardize.std`;
- "window": TSception on the filtered window itself, resampled from the stream rate to the
  model rate (FFT resampling, `resample_window`) and divided by `scale_uv`, shaped
  (channels, samples, 1) with the channels in the manifest's order.
A classifier is handed only the FeatureSet, so "window" models read the filtered window from
`features.extra["filtered"]` (and the stream rate from `extra["rate"]`), where the chain
(`edge.eeg.pipeline.EEGPipeline`) puts them. Only numpy and the project's backends run here: no
TensorFlow on the device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends import open_model
from edge.eeg.config import EEGConfig
from edge.eeg.estimator import ClassifierEstimator
from edge.errors import EdgeError
from edge.manifest import load_manifest

log = logging.getLogger(__name__)

INPUT_KINDS = ("de", "window")


def resample_window(x: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """Resample a window (samples, channels) by FFT: the length scales by rate_out / rate_in.

    The window is band-limited by the device's band-pass (<= 45 Hz), below both Nyquist rates,
    so truncating or zero-padding the spectrum keeps the signal; training uses this very function.
    """
    x = np.asarray(x, dtype=np.float64)
    n_in = x.shape[0]
    n_out = round(n_in * rate_out / rate_in)
    if n_out == n_in:
        return x.copy()
    if n_out < 2:
        raise EdgeError(f"cannot resample a {n_in}-sample window from {rate_in} Hz to {rate_out} Hz")
    spectrum = np.fft.rfft(x, axis=0)
    keep = min(len(spectrum), n_out // 2 + 1)
    out_spectrum = np.zeros((n_out // 2 + 1,) + x.shape[1:], dtype=complex)
    out_spectrum[:keep] = spectrum[:keep]
    if n_out < n_in and n_out % 2 == 0:
        out_spectrum[-1] = out_spectrum[-1].real  # the new Nyquist bin of a real signal is real
    return np.fft.irfft(out_spectrum, n=n_out, axis=0) * (n_out / n_in)


def window_input(filtered: np.ndarray, rate: float, preprocessing: dict[str, Any]) -> np.ndarray:
    """TSception input (channels, samples, 1) from a filtered window (samples, channels)."""
    model_rate = float(preprocessing["model_rate_hz"])
    x = resample_window(filtered, rate, model_rate) / float(preprocessing["scale_uv"])
    samples = int(preprocessing["samples"])
    if x.shape[0] != samples:
        raise EdgeError(f"a {filtered.shape[0]}-sample window at {rate:g} Hz gives {x.shape[0]} samples at "
                        f"{model_rate:g} Hz, but the model takes {samples}; set eeg.window_s to "
                        f"{preprocessing.get('window_s')} as in the model's manifest")
    return x.T[..., None].astype(np.float32)


def de_input(vector: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """Standardized DE feature vector, as in training."""
    mean = np.asarray(preprocessing["standardize"]["mean"], dtype=np.float64)
    std = np.asarray(preprocessing["standardize"]["std"], dtype=np.float64)
    vector = np.asarray(vector, dtype=np.float64).ravel()
    if vector.shape != mean.shape:
        raise EdgeError(f"the EEG model takes {mean.size} features but the window gives {vector.size}; use the "
                        f"channels {preprocessing.get('channels')} of the model's manifest in eeg.channels")
    return ((vector - mean) / std).astype(np.float32)


class _Prepared:
    """Stands in for a FeatureSet whose vector is an already prepared model input."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def vector(self, kind: str = "de") -> np.ndarray:
        return self.array


class EEGModelClassifier(ClassifierEstimator):
    """ClassifierEstimator over an exported artifact; knows its model id, sha256 and input kind."""

    def __init__(self, model, preprocessing: dict[str, Any], labels: list[str], model_id: str, sha256: str):
        self.model, self.preprocessing = model, preprocessing
        self.input_kind = preprocessing.get("input")
        if self.input_kind not in INPUT_KINDS:
            raise EdgeError(f"EEG model manifest preprocessing.input is {self.input_kind!r}, expected one of "
                            f"{list(INPUT_KINDS)}; re-export it with `emotion-export train-eeg`")
        self.model_id, self.sha256 = model_id, sha256
        super().__init__(self._run, labels, preprocessing.get("feature_kind", "de"))

    def _run(self, prepared: np.ndarray) -> np.ndarray:
        return self.model.predict(prepared[None])[0]

    def prepare(self, features) -> np.ndarray:
        """The model input for one window's FeatureSet."""
        if self.input_kind == "de":
            return de_input(features.vector(self.feature_kind), self.preprocessing)
        filtered = features.extra.get("filtered")
        if filtered is None:
            raise EdgeError("this EEG model (TSception) classifies the filtered window, which was not passed "
                            "on; give it windows from edge.eeg.pipeline.EEGPipeline")
        return window_input(filtered, float(features.extra["rate"]), self.preprocessing)

    def classify(self, features):
        return super().classify(_Prepared(self.prepare(features)))

    def check_config(self, config: EEGConfig) -> None:
        """EdgeError when the device's [eeg] settings differ from the ones the model was trained with."""
        p = self.preprocessing
        wanted = {"channels": list(p["channels"]), "window_s": p["window_s"],
                  "bandpass_low_hz": p["bandpass_hz"][0], "bandpass_high_hz": p["bandpass_hz"][1]}
        for key, value in wanted.items():
            have = list(getattr(config, key)) if key == "channels" else getattr(config, key)
            if have != value:
                raise EdgeError(f"eeg.{key} = {have!r} but the EEG model was trained with {value!r}; "
                                f"set eeg.{key} = {value!r}")


def load_eeg_classifier(artifact: str | Path, backend: str = "auto", threads: int = 1,
                        providers: Sequence[str] | None = None, cache_dir: str | Path | None = None
                        ) -> EEGModelClassifier:
    """Open an EEG artifact (its manifest beside it) and wrap it as the analyzer's classifier."""
    manifest = load_manifest(artifact)
    if manifest.data.get("modality") != "eeg":
        raise EdgeError(f"{manifest.path} is a {manifest.data.get('modality')!r} model, not an EEG one; point "
                        "eeg.model at an artifact written by `emotion-export train-eeg`")
    preprocessing = manifest.preprocessing
    model = open_model(manifest, backend=backend, threads=threads, providers=providers, cache_dir=cache_dir)
    return EEGModelClassifier(model, preprocessing, list(manifest.labels), manifest.model_id, manifest.sha256)

