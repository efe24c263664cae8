"""Old import path of the voice configuration and analyzer, kept while edge/config.py, edge/runtime.py and
tests/test_train_voice.py still import it; new code imports edge.voice.analyzer. Delete once they do."""

from __future__ import annotations

from ..events import Event, utc_timestamp
from .analyzer import DEFAULT_LABELS, VoiceAnalyzer, VoiceConfig, as_probabilities


class VoicePipeline(VoiceAnalyzer):
    """The analyzer behind today's edge/runtime.py VoiceWorker, which publishes events, not observations.

    A window becomes an event only when it has valence, arousal and a confidence; the old worker rounds
    them, and "no data" must not be published as 0. With the default label_threshold (1.0) valence is
    null, so this publishes no voice events until the runtime takes observations from VoiceAnalyzer."""

    def __init__(self, model, labels=None, config: VoiceConfig | None = None, vad_config=None,
                 device_id: str = "edge"):
        super().__init__(model, labels, config, vad_config)
        self.device_id = device_id

    def process(self, window) -> Event | None:  # type: ignore[override]
        (obs,) = super().process(window)
        if not obs.has_data or obs.confidence is None:
            return None
        return Event(device_id=self.device_id, modality="voice", kind="emotion", track_id=window.source,
                     label=obs.label, confidence=obs.confidence, probabilities=dict(obs.probabilities or {}),
                     valence=obs.valence, arousal=obs.arousal, timestamp=utc_timestamp(obs.timestamp),
                     model={**obs.model, "estimator": obs.estimator}, latency_ms=obs.latency_ms or 0.0,
                     extra=dict(obs.extra))


__all__ = ["DEFAULT_LABELS", "VoiceAnalyzer", "VoiceConfig", "VoicePipeline", "as_probabilities"]
