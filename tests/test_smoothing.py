"""Prediction smoothing: no flicker on noise, a sustained change switches after the dwell time."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import EdgeError
from edge.observation import Observation
from edge.smoothing import ObservationSmoother, Smoother, SmoothingConfig

LABELS = ("happy", "sad", "neutral")
HAPPY = np.array([0.9, 0.05, 0.05])
SAD = np.array([0.05, 0.9, 0.05])


def settle(smoother: Smoother, probs, frames: int = 20, fps: float = 10.0, start: float = 0.0) -> float:
    for i in range(frames):
        smoother.update(probs, start + i / fps)
    return start + frames / fps


def test_first_label_is_adopted_after_the_dwell_time():
    smoother = Smoother(LABELS, SmoothingConfig(dwell_s=0.5))
    results = [smoother.update(HAPPY, i / 10) for i in range(8)]
    labels = [r[1] for r in results]
    assert labels[:5] == [None] * 5 and labels[5:] == ["happy"] * 3
    assert [r[2] for r in results] == [False] * 5 + [True, False, False]
    assert smoother.confidence == pytest.approx(0.9)


def test_noisy_alternating_input_does_not_flicker():
    rng = np.random.default_rng(7)
    smoother = Smoother(LABELS, SmoothingConfig(alpha=0.3, dwell_s=0.5, min_confidence=0.4))
    t = settle(smoother, HAPPY)
    raw_leaders, changes = [], 0
    for i in range(200):
        # The raw argmax alternates every frame, with noise on every score.
        probs = (SAD if i % 2 else HAPPY) + rng.uniform(0, 0.1, 3)
        raw_leaders.append(int(np.argmax(probs)))
        _, label, changed = smoother.update(probs / probs.sum(), t + i / 10)
        changes += changed
    assert len(set(raw_leaders)) == 2 and sum(a != b for a, b in zip(raw_leaders, raw_leaders[1:])) == 199
    assert changes == 0 and smoother.label == "happy"


def test_sustained_change_switches_after_the_dwell_time_not_before():
    dwell = 0.5
    smoother = Smoother(LABELS, SmoothingConfig(alpha=0.3, dwell_s=dwell, min_confidence=0.5))
    t = settle(smoother, HAPPY)
    assert smoother.label == "happy"
    sad_leads_since = None
    switched_at = None
    for i in range(40):
        now = t + i / 10
        smoothed, label, changed = smoother.update(SAD, now)
        if sad_leads_since is None and np.argmax(smoothed) == 1 and smoothed[1] >= 0.5:
            sad_leads_since = now
        if changed:
            assert label == "sad" and switched_at is None
            switched_at = now
        elif switched_at is None:
            assert label == "happy"  # not before the dwell time has passed
    assert sad_leads_since is not None and switched_at is not None
    assert dwell <= switched_at - sad_leads_since < dwell + 0.1 + 1e-9


def test_interrupted_candidate_restarts_its_dwell():
    smoother = Smoother(LABELS, SmoothingConfig(alpha=1.0, dwell_s=0.5))
    t = settle(smoother, HAPPY)
    for i in range(4):  # sad for 0.3 s, less than the dwell
        assert smoother.update(SAD, t + i / 10)[1] == "happy"
    assert smoother.update(HAPPY, t + 0.4)[1] == "happy"
    labels = [smoother.update(SAD, t + 0.5 + i / 10)[1] for i in range(7)]
    assert labels == ["happy"] * 5 + ["sad"] * 2  # 0.5 s counted from the new run, not the first


def test_below_threshold_never_adopts_a_label():
    smoother = Smoother(LABELS, SmoothingConfig(min_confidence=0.6, dwell_s=0.0))
    unsure = np.array([0.45, 0.35, 0.2])
    results = [smoother.update(unsure, i / 10) for i in range(30)]
    assert all(label is None and not changed for _, label, changed in results)
    assert smoother.confidence == 0.0


def test_time_aware_weight_keeps_the_time_constant_when_frames_drop():
    config = SmoothingConfig(alpha=0.3, alpha_interval_s=0.1, dwell_s=0.0)
    every, skipping = Smoother(LABELS, config), Smoother(LABELS, config)
    every.update(HAPPY, 0.0)
    skipping.update(HAPPY, 0.0)
    for i in range(1, 11):
        every.update(SAD, i / 10)
        if i % 2 == 0:  # half the frames dropped
            skipping.update(SAD, i / 10)
    np.testing.assert_allclose(skipping.probs, every.probs, atol=1e-12)
    untimed = Smoother(LABELS, SmoothingConfig(alpha=0.3, alpha_interval_s=0.0))
    untimed.update(HAPPY, 0.0)
    untimed.update(SAD, 5.0)  # no time awareness: one update moves by alpha whatever the gap
    np.testing.assert_allclose(untimed.probs, 0.7 * HAPPY + 0.3 * SAD)


def test_non_finite_scores_are_skipped_and_wrong_length_is_an_error():
    smoother = Smoother(LABELS, SmoothingConfig(dwell_s=0.0))
    smoother.update(HAPPY, 0.0)
    smoothed, label, changed = smoother.update([np.nan, 1.0, 0.0], 0.1)
    np.testing.assert_allclose(smoothed, HAPPY)
    assert label == "happy" and not changed
    with pytest.raises(EdgeError, match="2 scores.*3 labels"):
        smoother.update([0.5, 0.5], 0.2)


def observation(subject, probs, t, **fields):
    return Observation("face", subject, t, probabilities=dict(zip(LABELS, probs)), confidence=max(probs), **fields)


def test_observation_smoother_keeps_subjects_apart_and_forgets_an_ended_one():
    smoother = ObservationSmoother({"face": (SmoothingConfig(dwell_s=0.0), False)})
    assert smoother.update(observation("f1", HAPPY, 0.0))[0].label == "happy"
    assert smoother.update(observation("f2", SAD, 0.0))[0].label == "sad"
    again, changed = smoother.update(observation("f1", HAPPY, 0.1))
    assert again.label == "happy" and not changed and again.probabilities["happy"] == pytest.approx(0.9)
    smoother.update(Observation("face", "f1", 0.2, kind="end"))
    assert len(smoother) == 1


def test_no_data_stays_none_and_does_not_disturb_the_average():
    smoother = ObservationSmoother({"eeg": (SmoothingConfig(alpha=0.5, alpha_interval_s=0.0), False)})
    first, _ = smoother.update(Observation("eeg", "wearer", 0.0, valence=0.8, arousal=0.2, confidence=0.2))
    gap, _ = smoother.update(Observation("eeg", "wearer", 0.5, extra={"rejected": "blink"}))
    assert (gap.valence, gap.arousal, gap.confidence) == (None, None, None)  # no data, never 0
    after, _ = smoother.update(Observation("eeg", "wearer", 1.0, valence=0.0, arousal=0.2, confidence=0.2))
    assert after.valence == pytest.approx(0.4)  # averaged with 0.8, as if the rejected window never came


def test_a_released_label_goes_back_to_uncertain_when_the_analyzer_stops_naming_one():
    smoother = ObservationSmoother({"voice": (SmoothingConfig(dwell_s=0.0), True)})
    named, _ = smoother.update(Observation("voice", "room", 0.0, label="happy",
                                           probabilities=dict(zip(LABELS, HAPPY)), confidence=0.9))
    unsure, changed = smoother.update(Observation("voice", "room", 1.0, probabilities=dict(zip(LABELS, HAPPY))))
    assert named.label == "happy" and unsure.label is None and changed


@pytest.mark.parametrize("key, value", [("alpha", 0.0), ("alpha", 1.5), ("min_confidence", -0.1),
                                        ("dwell_s", -1), ("alpha_interval_s", float("inf")), ("alpha", True)])
def test_config_validation_names_the_key(key, value):
    with pytest.raises(EdgeError, match=rf"smoothing\.{key}"):
        SmoothingConfig(**{key: value}).validate()
