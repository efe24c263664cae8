"""Voice modality: numpy features matching librosa, resampling, voice activity, prosody, the analyzer."""

from .analyzer import DEFAULT_LABELS, VoiceAnalyzer, VoiceConfig
from .features import FEATURE_SIZE, MODEL_RATE, FeatureExtractor
from .vad import VadConfig, VadResult, VoiceActivityDetector

__all__ = [
    "FEATURE_SIZE", "MODEL_RATE", "FeatureExtractor", "DEFAULT_LABELS", "VoiceAnalyzer", "VoiceConfig",
    "VadConfig", "VadResult", "VoiceActivityDetector",
]
