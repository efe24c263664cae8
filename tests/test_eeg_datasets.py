"""DREAMER and SEED readers on small .mat files written in the datasets' real layouts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from edge.eeg import MUSE_CHANNELS
from edge.eeg.config import EEGConfig
from export import eeg, eeg_data
from export.errors import ExportError

EMOTIV = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]


def _cell(items):
    out = np.empty((len(items), 1), dtype=object)
    for k, item in enumerate(items):
        out[k, 0] = item
    return out


def _write_dreamer(path, rng, subjects=2, clips=3, seconds=10):
    data = np.empty((1, subjects), dtype=object)
    for s in range(subjects):
        stimuli = [4200 + rng.standard_normal((seconds * 128 + 7 * k, 14)) * 10 for k in range(clips)]
        for k, signal in enumerate(stimuli):
            signal[:, EMOTIV.index("T7")] += 1000 * (s + 1) + k  # a tag per channel, subject and clip
            signal[:, EMOTIV.index("AF4")] -= 500
        data[0, s] = {
            "Age": 25, "Gender": "female",
            "EEG": {"stimuli": _cell(stimuli), "baseline": _cell([rng.standard_normal((7808, 14))] * clips)},
            "ECG": {"stimuli": _cell([np.zeros((10, 2))] * clips), "baseline": _cell([np.zeros((10, 2))] * clips)},
            "ScoreValence": np.array([[1], [4], [3]][:clips], dtype=float) + (s == 1),
            "ScoreArousal": np.array([[5], [2], [1]][:clips], dtype=float),
            "ScoreDominance": np.ones((clips, 1)),
        }
    electrodes = np.empty((1, 14), dtype=object)
    electrodes[0, :] = EMOTIV
    scipy.io.savemat(path, {"DREAMER": {
        "Data": data, "EEG_SamplingRate": 128.0, "ECG_SamplingRate": 256.0, "EEG_Electrodes": electrodes,
        "noOfSubjects": float(subjects), "noOfVideoSequences": float(clips), "Disclaimer": "synthetic",
        "Provider": "test", "Version": "1.0.0", "Acknowledgement": "none"}})


def test_dreamer_reader_maps_channels_labels_and_ids(tmp_path):
    path = tmp_path / "DREAMER.mat"
    _write_dreamer(path, np.random.default_rng(0))
    pieces, kind = eeg_data.read_dataset(path)
    assert kind == "dreamer" and len(pieces) == 6
    first = pieces[0]
    assert first.rate == 128.0 and first.channels == MUSE_CHANNELS and first.data.shape == (1280, 4)
    # valence > 3 -> positive; a score of exactly 3 is low
    assert [p.spans[0].label for p in pieces] == ["negative", "positive", "negative",
                                                  "negative", "positive", "positive"]
    assert [p.spans[0].subject for p in pieces] == ["s01"] * 3 + ["s02"] * 3
    assert pieces[4].spans[0].trial == "dreamer/s02/clip02" and pieces[1].data.shape == (1287, 4)
    # mean removed; TP9 column is Emotiv T7, AF8 is AF4 (tags vanish with the mean, so check noise scale)
    assert np.abs(first.data.mean(0)).max() < 1e-9 and 5 < first.data.std() < 20
    arousal = eeg_data.read_dreamer(path, "arousal")
    assert [p.spans[0].label for p in arousal[:3]] == ["high_arousal", "low_arousal", "low_arousal"]
    ws = eeg_data.windows(pieces, EEGConfig(), "de")
    assert ws.inputs.shape[1] == 20 and set(ws.subjects) == {"s01", "s02"}
    assert len(set(ws.trials)) == 6


def test_dreamer_channel_mapping_is_the_documented_one(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "DREAMER.mat"
    _write_dreamer(path, rng, subjects=1, clips=1)
    raw = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)["DREAMER"].Data.EEG.stimuli
    assert raw.shape == (1280, 14)
    piece = eeg_data.read_dreamer(path)[0]
    for muse, emotiv in eeg_data.DREAMER_MAP.items():
        column = np.asarray(raw)[:, EMOTIV.index(emotiv)]
        np.testing.assert_allclose(piece.data[:, MUSE_CHANNELS.index(muse)], column - column.mean(), atol=1e-9)


def _write_seed(folder, rng, seconds=9):
    base = folder / "Preprocessed_EEG"
    base.mkdir(parents=True)
    scipy.io.savemat(base / "label.mat", {"label": np.array([[1, 0, -1]])})
    for subject, date, initials in ((1, "20131027", "djc"), (1, "20131030", "djc"), (2, "20140404", "jl")):
        trials = {}
        for k in range(1, 4):
            signal = rng.standard_normal((62, seconds * 200 + k)) * 10
            signal[eeg_data.SEED_CHANNELS.index("FP1")] += 100.0 * k  # constant tag (filtered away later)
            trials[f"{initials}_eeg{k}"] = signal
        scipy.io.savemat(base / f"{subject}_{date}.mat", trials)


def test_seed_reader_maps_channels_labels_and_ids(tmp_path):
    _write_seed(tmp_path, np.random.default_rng(2))
    pieces, kind = eeg_data.read_dataset(tmp_path)
    assert kind == "seed" and len(pieces) == 9
    assert [p.spans[0].label for p in pieces[:3]] == ["positive", "neutral", "negative"]
    assert [p.spans[0].subject for p in pieces] == ["s01"] * 6 + ["s02"] * 3
    assert pieces[3].spans[0].trial == "seed/s01/20131030/trial01"
    assert pieces[2].rate == 200.0 and pieces[2].data.shape == (1803, 4)
    raw = scipy.io.loadmat(str(tmp_path / "Preprocessed_EEG" / "2_20140404.mat"))["jl_eeg2"]
    for muse, site in eeg_data.SEED_MAP.items():
        row = raw[eeg_data.SEED_CHANNELS.index(site)]
        np.testing.assert_allclose(pieces[7].data[:, MUSE_CHANNELS.index(muse)], row - row.mean(), atol=1e-9)
    # TSception inputs are resampled from SEED's 200 Hz to the model's 128 Hz
    prep = eeg.preprocessing(EEGConfig(), "window", 200.0, model_rate_hz=128.0, samples=512, scale_uv=1.0)
    ws = eeg_data.windows(pieces, EEGConfig(), "window", prep)
    assert ws.inputs.shape[1:] == (4, 512, 1) and len(set(ws.trials)) == 9
    assert len(eeg_data.SEED_CHANNELS) == 62


def test_dataset_layout_errors_are_clear(tmp_path):
    bad = tmp_path / "DREAMER.mat"
    scipy.io.savemat(bad, {"something": np.zeros(3)})
    with pytest.raises(ExportError, match="no DREAMER struct"):
        eeg_data.read_dataset(bad)
    (tmp_path / "seed" / "Preprocessed_EEG").mkdir(parents=True)
    scipy.io.savemat(tmp_path / "seed" / "Preprocessed_EEG" / "label.mat", {"label": np.array([[1, 5]])})
    with pytest.raises(ExportError, match="-1/0/1"):
        eeg_data.read_dataset(tmp_path / "seed")
    (tmp_path / "x.txt").write_text("no")
    with pytest.raises(ExportError, match="expected DREAMER.mat"):
        eeg_data.read_dataset(tmp_path / "x.txt")
