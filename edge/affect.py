"""Categorical emotion labels mapped onto the valence/arousal circumplex.

Hubs act on valence (pleasant vs unpleasant) and arousal (calm vs excited) rather than on
labels. Each label has a documented coordinate in [-1, 1] x [-1, 1]: approximate positions
of the categories on Russell's circumplex of affect (Russell 1980, J. Pers. Soc. Psychol.
39(6)), as also used for the AffectNet category/dimension comparison (Mollahosseini et al.
2017). A prediction's valence and arousal are the probability-weighted mean of its labels'
coordinates, so an uncertain prediction pulls towards the neutral centre.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "angry": (-0.51, 0.59),
    "disgust": (-0.60, 0.35),
    "fear": (-0.64, 0.60),
    "fearful": (-0.64, 0.60),
    "happy": (0.81, 0.51),
    "sad": (-0.63, -0.27),
    "surprise": (0.20, 0.80),
    "surprised": (0.20, 0.80),
    "neutral": (0.00, 0.00),
    "calm": (0.45, -0.60),
    "positive": (0.70, 0.10),
    "negative": (-0.70, 0.10),
    # Binarized dimensional labels (DREAMER arousal scores > 3 vs <= 3): the dimension itself, the other at 0.
    "low_arousal": (0.00, -0.60),
    "high_arousal": (0.00, 0.60),
}


def coordinates(label: str) -> tuple[float, float]:
    """Circumplex (valence, arousal) of one label; unknown labels are an error, not a guess."""
    try:
        return CIRCUMPLEX[label.lower()]
    except KeyError:
        raise KeyError(
            f"label {label!r} has no valence/arousal coordinate; add it to edge.affect.CIRCUMPLEX"
        ) from None


def valence_arousal(labels: Sequence[str], probabilities: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Probability-weighted circumplex position of a prediction."""
    probs = np.asarray(probabilities, dtype=np.float64)
    total = float(probs.sum())
    if total <= 0:
        return 0.0, 0.0
    coords = np.array([coordinates(label) for label in labels], dtype=np.float64)
    valence, arousal = (probs[:, None] * coords).sum(axis=0) / total
    return float(valence), float(arousal)


def label_table(labels: Sequence[str]) -> Mapping[str, tuple[float, float]]:
    """The coordinates used for a model's labels, as recorded in docs and manifests."""
    return {label: coordinates(label) for label in labels}
