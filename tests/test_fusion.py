"""Fusion scenarios on real Observation objects; time is the observations' own timestamps (fusion is pure)."""

import math

import pytest

from edge.errors import EdgeError
from edge.fusion import FUSED_CIRCUMPLEX, MODALITIES, SECTORS, Fusion, FusionConfig, circumplex_label
from edge.observation import Observation

T0 = 1_800_000_000.0
FRAME = [640, 480]


def face(t, valence=0.6, arousal=0.4, confidence=0.9, quality=0.9, subject="face-1", box=(270, 190, 100, 100),
         kind="state", frame=FRAME):
    extra = {"box": list(box), "frame": list(frame)} if box is not None else {}
    return Observation("face", subject, t, kind=kind, label="happy", valence=valence, arousal=arousal,
                       confidence=confidence, quality=quality, extra=extra)


def voice(t, valence=0.5, arousal=0.5, confidence=0.8, quality=0.8, subject="room"):
    return Observation("voice", subject, t, valence=valence, arousal=arousal, confidence=confidence,
                       quality=quality)


def eeg(t, valence=0.55, arousal=0.45, confidence=0.7, quality=0.9, estimator="classifier", subject="wearer"):
    return Observation("eeg", subject, t, valence=valence, arousal=arousal, confidence=confidence,
                       quality=quality, estimator=estimator)


def feed(fusion, *observations):
    out = []
    for observation in observations:
        out += fusion.update(observation)
    return out


def contributions(fused):
    return fused.extra["contributions"]


def test_all_agree_fuse_near_them_with_high_confidence():
    fusion = Fusion()
    fused = feed(fusion, face(T0), voice(T0), eeg(T0))[-1]
    assert fused.modality == "fused" and fused.subject == "wearer" and fused.estimator == "fusion"
    assert 0.5 <= fused.valence <= 0.6 and 0.4 <= fused.arousal <= 0.5
    assert fused.confidence > 0.8 and fused.label == "happy"
    parts = contributions(fused)
    assert set(parts) == set(MODALITIES)
    assert all(p["status"] == "contributing" and p["weight"] > 0.2 for p in parts.values())
    assert math.isclose(sum(p["weight"] for p in parts.values()), 1.0, abs_tol=1e-3)
    assert parts["face"]["subject"] == "face-1" and parts["voice"]["subject"] == "room"
    # the face had the highest base x confidence x quality, so it weighs most
    assert parts["face"]["weight"] > parts["voice"]["weight"]


def test_a_contradicting_modality_with_low_confidence_moves_little_but_lowers_confidence():
    agree = feed(Fusion(), face(T0), eeg(T0))[-1]
    fused = feed(Fusion(), face(T0), eeg(T0), voice(T0, valence=-0.7, arousal=-0.3, confidence=0.15))[-1]
    assert contributions(fused)["voice"]["weight"] < 0.1
    assert abs(fused.valence - agree.valence) < 0.1 and abs(fused.arousal - agree.arousal) < 0.1
    assert fused.label == agree.label == "happy"
    assert fused.extra["agreement"] < agree.extra["agreement"] and fused.confidence < agree.confidence
    # the same contradiction stated with high confidence pulls the estimate and the confidence much more
    strong = feed(Fusion(), face(T0), eeg(T0), voice(T0, valence=-0.7, arousal=-0.3, confidence=0.95,
                                                      quality=1.0))[-1]
    assert strong.valence < fused.valence - 0.2 and strong.confidence < fused.confidence


def test_a_modality_that_drops_out_decays_to_zero_and_is_listed_as_null():
    fusion = Fusion()
    start = feed(fusion, face(T0), voice(T0), eeg(T0))[-1]
    # face keeps coming, voice and eeg fall silent
    halfway = feed(fusion, face(T0 + 3.0))[-1]
    assert 0 < contributions(halfway)["voice"]["weight"] < contributions(start)["voice"]["weight"]
    assert contributions(halfway)["voice"]["age_s"] == pytest.approx(3.0)
    assert fusion.tick(T0 + 4.0) == []  # nothing aged out yet: no new state to report
    feed(fusion, face(T0 + 4.5))
    dropped = fusion.tick(T0 + 5.5)  # eeg_max_age_s = 5: EEG ages out; voice (6 s) still counts
    assert len(dropped) == 1
    eeg_part = contributions(dropped[0])["eeg"]
    assert eeg_part["status"] == "stale" and eeg_part["weight"] == 0
    assert eeg_part["valence"] is None and eeg_part["arousal"] is None and eeg_part["confidence"] is None
    assert contributions(dropped[0])["voice"]["status"] == "contributing"
    assert fusion.tick(T0 + 5.8) == []
    assert contributions(fusion.tick(T0 + 6.1)[0])["voice"]["weight"] == 0
    # the face too (last seen at T0 + 4.5, max age 2 s): nothing contributes, so no fused value at all
    last = fusion.tick(T0 + 7.0)[0]
    assert last.valence is None and last.arousal is None and last.confidence is None and last.label is None
    assert all(p["weight"] == 0 and p["valence"] is None for p in contributions(last).values())
    assert contributions(last)["face"]["status"] == "stale" and contributions(last)["face"]["age_s"] == 2.5


def test_uncalibrated_eeg_index_weighs_little():
    fused = feed(Fusion(), face(T0, valence=0.6), eeg(T0, valence=-0.5, arousal=0.1, confidence=0.15,
                                                      estimator="index"))[-1]
    assert contributions(fused)["eeg"]["weight"] < 0.15
    assert fused.valence > 0.4 and fused.label == "happy"


def test_face_and_voice_without_eeg_still_fuse_for_the_subject():
    fused = feed(Fusion(), face(T0), voice(T0))[-1]
    parts = contributions(fused)
    assert fused.subject == "wearer" and fused.valence > 0.4
    assert parts["eeg"] == {"weight": 0.0, "valence": None, "arousal": None, "confidence": None, "age_s": None,
                            "subject": None, "status": "absent"}


def test_largest_face_is_bound_kept_and_rebound_when_its_track_ends():
    fusion = Fusion()
    small = face(T0, subject="face-1", box=(10, 10, 60, 60), valence=-0.5, arousal=0.2)
    big = face(T0, subject="face-2", box=(200, 100, 180, 180), valence=0.7, arousal=0.3)
    assert len(feed(fusion, small)) == 1 and fusion.bound_face == "face-1"  # the only face yet
    assert feed(fusion, big) == [] and fusion.bound_face == "face-1"  # bound until its track ends
    ended = fusion.update(face(T0 + 0.2, subject="face-1", kind="end", valence=None, arousal=None,
                               confidence=None))
    assert fusion.bound_face == "face-2" and contributions(ended[0])["face"]["subject"] == "face-2"
    assert ended[0].valence == pytest.approx(0.7)


def test_binding_picks_the_largest_or_the_most_central_among_live_tracks():
    first = face(T0, subject="face-0", box=(0, 0, 50, 50))
    corner = face(T0 + 0.1, subject="face-1", box=(0, 0, 200, 200))  # larger, off centre
    centre = face(T0 + 0.1, subject="face-2", box=(280, 200, 80, 80))  # smaller, at the centre
    no_box = face(T0 + 0.1, subject="face-3", box=None)
    end = face(T0 + 0.2, subject="face-0", kind="end")
    for rule, expected in (("largest", "face-1"), ("central", "face-2"), ("face-2", "face-2")):
        fusion = Fusion(FusionConfig(face_binding=rule))
        feed(fusion, first, no_box, centre, corner)  # neither winner arrives first
        assert fusion.bound_face == ("face-0" if rule != "face-2" else "face-2"), rule
        rebound = fusion.update(end)
        assert fusion.bound_face == expected, rule
        if rule != "face-2":
            assert contributions(rebound[0])["face"]["subject"] == expected


def test_a_bound_track_that_stops_without_end_is_rebound_on_tick():
    fusion = Fusion()
    feed(fusion, face(T0, subject="face-1", box=(0, 0, 200, 200)), face(T0, subject="face-2", box=(0, 0, 90, 90)))
    assert fusion.bound_face == "face-1"
    feed(fusion, face(T0 + 1.5, subject="face-2", box=(0, 0, 90, 90)))
    rebound = fusion.tick(T0 + 2.5)  # face-1 last seen 2.5 s ago > face_max_age_s
    assert fusion.bound_face == "face-2" and contributions(rebound[0])["face"]["subject"] == "face-2"


def test_no_data_is_none_never_zero():
    fusion = Fusion()
    assert fusion.tick(T0) == []  # nothing seen, nothing to say
    fused = fusion.update(face(T0, valence=None, arousal=None, confidence=None, kind="start"))[0]
    assert fused.valence is None and fused.arousal is None and fused.confidence is None and fused.label is None
    assert fused.quality is None
    part = contributions(fused)["face"]
    assert part["status"] == "no_data" and part["weight"] == 0 and part["valence"] is None
    # an estimate without a confidence or quality is not counted either
    unrated = fusion.update(voice(T0, confidence=None))[0]
    assert unrated.valence is None and contributions(unrated)["voice"]["status"] == "unrated"


def test_low_fused_confidence_gives_no_label_but_keeps_the_estimate():
    fused = Fusion().update(voice(T0, confidence=0.2, quality=0.5))[0]
    assert fused.confidence < 0.25 and fused.label is None and fused.valence == pytest.approx(0.5)


def test_other_subjects_and_late_observations_do_not_count():
    fusion = Fusion(FusionConfig(eeg_subject="wearer"))
    assert fusion.update(eeg(T0, subject="other-headband")) == []
    feed(fusion, eeg(T0 + 1.0, valence=0.5))
    assert fusion.update(eeg(T0 + 0.5, valence=-0.9)) == []
    assert fusion.fuse().valence == pytest.approx(0.5)


def test_circumplex_sectors_and_neutral():
    assert circumplex_label(0.05, -0.1, 0.2) == "neutral"
    for name, (valence, arousal) in FUSED_CIRCUMPLEX.items():
        assert circumplex_label(valence, arousal, 0.2) == name
    assert len(SECTORS) == 8


@pytest.mark.parametrize("key, value", [("face_weight", 1.5), ("eeg_max_age_s", 0.0), ("face_binding", ""),
                                        ("subject", "a/b"), ("min_confidence", -0.1)])
def test_bad_config_is_one_line_naming_the_key(key, value):
    with pytest.raises(EdgeError, match=rf"^fusion\.{key} = .*expected") as error:
        FusionConfig(**{key: value}).validate()
    assert "\n" not in str(error.value)
    with pytest.raises(EdgeError, match="at least one modality"):
        FusionConfig(face_weight=0.0, voice_weight=0.0, eeg_weight=0.0).validate()


def test_a_modality_measuring_one_dimension_moves_only_that_one():
    """Voice's default model names no label on plain speech, so it gives prosodic arousal and no valence."""
    alone = feed(Fusion(), face(T0, valence=0.6, arousal=0.0))[-1]
    fused = feed(Fusion(), face(T0, valence=0.6, arousal=0.0), voice(T0, valence=None, arousal=0.9))[-1]
    assert fused.valence == pytest.approx(alone.valence)  # nothing but the face speaks to valence
    assert fused.arousal > alone.arousal + 0.2
    part = contributions(fused)["voice"]
    assert part["status"] == "contributing" and part["valence"] is None and part["arousal"] == 0.9
    only_voice = feed(Fusion(), voice(T0, valence=None, arousal=0.9))[-1]
    assert only_voice.valence is None and only_voice.arousal == pytest.approx(0.9) and only_voice.label is None
