"""Old import path of the voice configuration and analyzer, kept while edge/config.py, edge/runtime.py and
tests/test_train_voice.py still import it; new code imports edge.voice.analyzer. Delete once they do."""

from .analyzer import DEFAULT_LABELS, VoiceAnalyzer, VoiceConfig, as_probabilities

VoicePipeline = VoiceAnalyzer

__all__ = ["DEFAULT_LABELS", "VoiceAnalyzer", "VoiceConfig", "VoicePipeline", "as_probabilities"]
