"""EEG modality: Muse headband over Lab Streaming Layer -> band features -> valence/arousal index.

Data flow: `edge.sources.lsl.LSLSource` (inlet, clock sync, gaps, reconnect) -> `filters.Preprocessor`
(band-pass + mains notch, streaming) -> `windows.SlidingWindow` -> `quality` (per-channel health,
artifact rejection) -> `features` (Welch band power, differential entropy, frontal alpha asymmetry)
-> an estimator: the wearer's own model (`calibration`, from `emotion-edge calibrate`), a trained
classifier (`classifier`), or the training-free index (`estimator`) -> `analyzer.EEGAnalyzer`, one raw
observation of the wearer per window. Offline training and calibration reuse the same chain through
`pipeline.extract_recording_features`.
"""

MUSE_CHANNELS = ("TP9", "AF7", "AF8", "TP10")
MUSE_AUX_CHANNEL = "Right AUX"
MUSE_RATE = 256.0
