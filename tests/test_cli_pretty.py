"""`--pretty` lines: values only where there are some, and a warming-up EEG index says so instead of 0.00."""

from __future__ import annotations

from edge.cli import pretty_event
from edge.events import Event, utc_timestamp


def _event(kind="emotion", modality="face", label="happy", extra=None) -> Event:
    return Event(device_id="d", modality=modality, kind=kind, track_id="f1", label=label, confidence=0.9,
                 probabilities={}, valence=0.0, arousal=0.0, timestamp=utc_timestamp(), model={},
                 latency_ms=1.0, extra=extra or {})


def test_warming_up_eeg_shows_progress_not_zeros():
    line = pretty_event(_event(modality="eeg", label=None, extra={"warming_up": True, "warmup_progress": 0.4}))
    assert "baseline (40% of eeg.warmup_s" in line
    assert "valence" not in line and "0.00" not in line


def test_emotion_shows_values_and_track_events_show_none():
    assert "happy     conf=0.90 valence=+0.00 arousal=+0.00" in pretty_event(_event())
    assert "conf" not in pretty_event(_event(kind="track_start", label=None))
    assert "valence=+0.00" in pretty_event(_event(modality="eeg", label=None, extra={"warming_up": False}))
