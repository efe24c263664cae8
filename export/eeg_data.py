"""EEG training data: the project's own recordings, DREAMER and SEED, cut into device windows.

Every source becomes `Piece`s (continuous signal in Muse channel order, with labelled `Span`s) and
goes through the device's own chain (`edge.eeg.pipeline.EEGPipeline`: filters, 4 s windows,
quality checks, DE features), so a model trains on the numbers it will see on the headband.
Windows the device would reject (blinks, jaw, flat, saturated) are left out, as on the device.

Recordings (`edge.eeg.recorder`): labels come from the LSL marker stream. Marker convention:
`label:<name>` (e.g. `label:positive`, `label:neutral`, `label:negative`) starts a labelled trial
that runs until the next `label:...` or `end` marker (or the end of the recording); other markers
are ignored. Windows must lie wholly inside one trial. Recordings in sub-folders of --data take
the sub-folder name as the subject (`data/alice/s1.csv`); top-level recordings are each their own subject.

DREAMER (Katsigiannis & Ramzan 2018; `DREAMER.mat`): 23 subjects x 18 film clips, 14-channel
Emotiv EPOC at 128 Hz, self-assessed valence/arousal/dominance 1-5. Muse-like subset: T7 -> TP9,
AF3 -> AF7, AF4 -> AF8, T8 -> TP10 (the closest Emotiv sites). Target: valence (default) or arousal
binarized as score > 3 -> "positive"/"high", else "negative"/"low" (scores of 3 count as low).
Only the stimulus recordings are used (not the pre-clip baselines); each trial's channel mean is
removed first (the Emotiv signal sits on a ~4000 uV offset the saturation check would reject).

SEED (Zheng & Lu 2015; `Preprocessed_EEG/<subject>_<date>.mat` with `<initials>_eeg1..15`, 62 x n
at 200 Hz, plus `label.mat` with 15 labels -1/0/1 -> negative/neutral/positive): Muse-like subset
FP1 -> AF7, FP2 -> AF8 (forehead sites next to AF7/AF8; SEED has no AF7/AF8) and TP7 -> TP9,
TP8 -> TP10 (the temporo-parietal sites just above the Muse's behind-the-ear electrodes, closer
than T7/T8). The chain runs at SEED's 200 Hz; TSception inputs are resampled to the model rate.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.eeg import MUSE_CHANNELS
from edge.eeg.classifier import window_input
from edge.eeg.config import EEGConfig
from edge.eeg.pipeline import EEGPipeline
from edge.eeg.recorder import load_recording
from edge.errors import EdgeError

from .errors import ExportError

log = logging.getLogger(__name__)

MARKER_PREFIX = "label:"
MARKER_END = "end"
DREAMER_RATE = 128.0
DREAMER_MAP = {"TP9": "T7", "AF7": "AF3", "AF8": "AF4", "TP10": "T8"}
SEED_RATE = 200.0
SEED_MAP = {"TP9": "TP7", "AF7": "FP1", "AF8": "FP2", "TP10": "TP8"}
SEED_LABELS = {-1: "negative", 0: "neutral", 1: "positive"}
SEED_CHANNELS = (
    "FP1", "FPZ", "FP2", "AF3", "AF4", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "FT7", "FC5",
    "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8",
    "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "P7", "P5", "P3", "P1", "PZ", "P2", "P4",
    "P6", "P8", "PO7", "PO5", "PO3", "POZ", "PO4", "PO6", "PO8", "CB1", "O1", "OZ", "O2", "CB2",
)


@dataclass
class Span:
    """One labelled trial inside a piece of signal: [start, end) in the piece's clock."""

    start: float
    end: float
    label: str
    trial: str
    subject: str


@dataclass
class Piece:
    """Continuous signal (samples, channels) in Muse channel order with its labelled trials."""

    data: np.ndarray
    timestamps: np.ndarray
    rate: float
    spans: list[Span]
    channels: tuple[str, ...] = MUSE_CHANNELS


@dataclass
class WindowSet:
    """Model inputs of accepted windows with their label, trial and subject."""

    inputs: np.ndarray  # (n, features) for "de", (n, channels, samples, 1) for "window"
    labels: list[str]
    trials: list[str]
    subjects: list[str]
    rejected: int = 0
    outside: int = 0  # windows not wholly inside one labelled trial
    sources: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def marker_spans(markers: list[tuple[float, str]], end_time: float, recording: str, subject: str) -> list[Span]:
    """Labelled trials from `label:<name>` ... (`label:...` | `end`) markers."""
    spans: list[Span] = []
    current: tuple[float, str] | None = None
    for time, text in sorted(markers):
        text = text.strip()
        is_label = text.lower().startswith(MARKER_PREFIX)
        if not is_label and text.lower() != MARKER_END:
            continue
        if current is not None:
            spans.append(Span(current[0], time, current[1], f"{recording}#{len(spans)}", subject))
            current = None
        if is_label:
            label = text[len(MARKER_PREFIX):].strip().lower()
            if not label:
                raise ExportError(f"{recording}: marker {text!r} names no label; send e.g. 'label:positive'")
            current = (time, label)
    if current is not None:
        spans.append(Span(current[0], end_time, current[1], f"{recording}#{len(spans)}", subject))
    return spans


def read_recordings(folder: Path) -> list[Piece]:
    """Every recording (.json + .csv) under `folder`, with trials from its markers."""
    metas = sorted(p for p in folder.rglob("*.json") if not p.name.endswith(".tmp"))
    pieces = []
    for meta in metas:
        try:
            rec = load_recording(meta)
        except EdgeError as exc:
            log.warning("skipping %s: %s", meta, exc)
            continue
        relative = meta.relative_to(folder)
        subject = relative.parts[0] if len(relative.parts) > 1 else meta.stem
        name = str(relative.with_suffix(""))
        missing = [c for c in MUSE_CHANNELS if c not in rec.channels]
        if missing:
            raise ExportError(f"recording {name} lacks channels {missing}; record the Muse's {list(MUSE_CHANNELS)}")
        if not len(rec.timestamps):
            continue
        columns = [rec.channels.index(c) for c in MUSE_CHANNELS]
        spans = marker_spans(rec.markers, float(rec.timestamps[-1]) + 1.0 / rec.rate, name, subject)
        if not spans:
            log.warning("recording %s has no 'label:<name>' markers; it is not used", name)
            continue
        pieces.append(Piece(rec.data[:, columns], rec.timestamps, rec.rate, spans))
    if not pieces:
        raise ExportError(f"no labelled recordings under {folder}: record with `python -m edge.eeg.recorder` and "
                          "send markers 'label:<class>' ... 'end' on an LSL Markers stream")
    return pieces


def _loadmat(path: Path) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except NotImplementedError:
        raise ExportError(f"{path} is a MATLAB v7.3 (HDF5) file; re-save it with save(..., '-v7')") from None
    except (ValueError, TypeError, OSError) as exc:
        raise ExportError(f"cannot read {path} as a MATLAB file ({exc})") from None


def _trial_piece(signal: np.ndarray, rate: float, label: str, trial: str, subject: str) -> Piece:
    data = np.asarray(signal, dtype=np.float64)
    data = data - data.mean(axis=0)
    times = np.arange(len(data)) / rate
    return Piece(data, times, rate, [Span(0.0, len(data) / rate, label, trial, subject)])


def read_dreamer(path: Path, target: str = "valence") -> list[Piece]:
    """DREAMER.mat -> one piece per (subject, clip), labelled by the binarized target score."""
    if target not in ("valence", "arousal"):
        raise ExportError(f"DREAMER target must be valence or arousal, not {target!r}")
    mat = _loadmat(path)
    if "DREAMER" not in mat:
        raise ExportError(f"{path} has no DREAMER struct; give the original DREAMER.mat")
    root = mat["DREAMER"]
    try:
        electrodes = [str(e).strip().upper() for e in np.atleast_1d(root.EEG_Electrodes)]
        rate = float(root.EEG_SamplingRate)
        subjects = np.atleast_1d(root.Data)
    except AttributeError as exc:
        raise ExportError(f"{path}: DREAMER struct lacks {exc}; give the original DREAMER.mat") from None
    missing = [site for site in DREAMER_MAP.values() if site not in electrodes]
    if missing:
        raise ExportError(f"{path}: DREAMER electrodes {electrodes} lack {missing}")
    columns = [electrodes.index(DREAMER_MAP[c]) for c in MUSE_CHANNELS]
    names = ("negative", "positive") if target == "valence" else ("low_arousal", "high_arousal")
    pieces = []
    for s, subject in enumerate(subjects, start=1):
        scores = np.atleast_1d(getattr(subject, "ScoreValence" if target == "valence" else "ScoreArousal"))
        stimuli = subject.EEG.stimuli
        # squeeze_me turns a one-clip cell into the clip itself
        stimuli = [stimuli] if stimuli.dtype != object else list(np.atleast_1d(stimuli))
        if len(stimuli) != len(scores):
            raise ExportError(f"{path}: subject {s} has {len(stimuli)} clips but {len(scores)} scores")
        for k, (signal, score) in enumerate(zip(stimuli, scores), start=1):
            signal = np.asarray(signal)
            if signal.ndim != 2 or signal.shape[1] != len(electrodes):
                raise ExportError(f"{path}: subject {s} clip {k} has shape {signal.shape}, expected "
                                  f"(samples, {len(electrodes)})")
            label = names[int(float(score) > 3)]
            pieces.append(_trial_piece(signal[:, columns], rate, label, f"dreamer/s{s:02d}/clip{k:02d}", f"s{s:02d}"))
    return pieces


def read_seed(folder: Path) -> list[Piece]:
    """SEED Preprocessed_EEG folder -> one piece per (subject, session, clip)."""
    base = folder / "Preprocessed_EEG" if (folder / "Preprocessed_EEG").is_dir() else folder
    label_file = base / "label.mat"
    if not label_file.is_file():
        raise ExportError(f"{label_file} not found; give SEED's folder holding Preprocessed_EEG/label.mat")
    codes = np.atleast_1d(_loadmat(label_file).get("label", np.empty(0))).astype(int).ravel()
    if not len(codes) or not set(codes) <= set(SEED_LABELS):
        raise ExportError(f"{label_file} must hold `label` with values -1/0/1, got {codes[:20]}")
    columns = [SEED_CHANNELS.index(SEED_MAP[c]) for c in MUSE_CHANNELS]
    pattern = re.compile(r"^(\d+)_(\w+)$")
    pieces = []
    for path in sorted(base.glob("*.mat")):
        match = pattern.match(path.stem)
        if path == label_file or not match:
            continue
        subject, session = f"s{int(match.group(1)):02d}", match.group(2)
        mat = _loadmat(path)
        trials = {}
        for key, value in mat.items():
            found = re.match(r"^\w+_eeg(\d+)$", key)
            if found:
                trials[int(found.group(1))] = value
        if sorted(trials) != list(range(1, len(codes) + 1)):
            raise ExportError(f"{path} holds trials {sorted(trials)}, expected <initials>_eeg1..{len(codes)}")
        for k in sorted(trials):
            signal = np.asarray(trials[k])
            if signal.ndim != 2 or signal.shape[0] != len(SEED_CHANNELS):
                raise ExportError(f"{path}: trial {k} has shape {signal.shape}, expected (62, samples)")
            pieces.append(_trial_piece(signal[columns].T, SEED_RATE, SEED_LABELS[int(codes[k - 1])],
                                       f"seed/{subject}/{session}/trial{k:02d}", subject))
    if not pieces:
        raise ExportError(f"no SEED recordings (<subject>_<date>.mat) next to {label_file}")
    return pieces


def read_dataset(path: Path, dreamer_target: str = "valence") -> tuple[list[Piece], str]:
    """(pieces, dataset kind) for a recordings folder, DREAMER.mat or a SEED folder."""
    if not path.exists():
        raise ExportError(f"--data {path} does not exist; give a folder of recordings, DREAMER.mat or SEED's folder")
    if path.is_file():
        if path.suffix.lower() != ".mat":
            raise ExportError(f"--data {path}: expected DREAMER.mat, a SEED folder or a folder of recordings")
        return read_dreamer(path, dreamer_target), "dreamer"
    if (path / "Preprocessed_EEG").is_dir() or (path / "label.mat").is_file():
        return read_seed(path), "seed"
    return read_recordings(path), "recordings"


class _Gap:
    def __init__(self, index: int, seconds: float):
        self.index, self.seconds = index, seconds


class _Chunk:
    def __init__(self, timestamps, data, gaps):
        self.timestamps, self.data, self.gaps = timestamps, data, gaps
        self.received = float(timestamps[-1])
        self.new_stream = False


def piece_windows(piece: Piece, config: EEGConfig, block: int = 256):
    """WindowResults of a piece through the device chain (gaps restart filters as live)."""
    pipeline = EEGPipeline(config)
    pipeline.set_stream(piece.channels, piece.rate)
    steps = np.diff(piece.timestamps, prepend=piece.timestamps[0])
    for start in range(0, len(piece.timestamps), block):
        end = min(start + block, len(piece.timestamps))
        gaps = [_Gap(int(i), float(steps[start + i])) for i in np.flatnonzero(steps[start:end] > config.reset_on_gap_s)]
        yield from pipeline.analyse_chunk(_Chunk(piece.timestamps[start:end], piece.data[start:end], gaps))


def windows(pieces: list[Piece], config: EEGConfig, kind: str, preprocessing: dict | None = None) -> WindowSet:
    """Accepted windows wholly inside a labelled trial, as DE vectors ("de") or TSception inputs ("window")."""
    inputs, labels, trials, subjects = [], [], [], []
    rejected = outside = 0
    for piece in pieces:
        for result in piece_windows(piece, config):
            t0, t1 = float(result.times[0]), float(result.times[-1])
            span = next((s for s in piece.spans if s.start <= t0 and t1 < s.end), None)
            if span is None:
                outside += 1
                continue
            if result.rejected:
                rejected += 1
                continue
            if kind == "de":
                inputs.append(result.features.vector("de"))
            else:
                inputs.append(window_input(result.features.extra["filtered"], piece.rate, preprocessing))
            labels.append(span.label)
            trials.append(span.trial)
            subjects.append(span.subject)
    if not labels:
        raise ExportError(f"no usable windows: {rejected} rejected by the quality checks, {outside} outside "
                          "labelled trials; check the markers and the signal quality")
    return WindowSet(np.stack(inputs), labels, trials, subjects, rejected, outside)
