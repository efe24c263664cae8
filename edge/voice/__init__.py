"""Voice modality: numpy features matching librosa, resampling, voice activity, the pipeline."""

from .features import FEATURE_SIZE, MODEL_RATE, FeatureExtractor
from .pipeline import DEFAULT_LABELS, EmaSmoother, VoiceConfig, VoicePipeline
from .vad import VadConfig, VadResult, VoiceActivityDetector

__all__ = [
    "FEATURE_SIZE", "MODEL_RATE", "FeatureExtractor", "DEFAULT_LABELS", "EmaSmoother", "VoiceConfig",
    "VoicePipeline", "VadConfig", "VadResult", "VoiceActivityDetector",
]
