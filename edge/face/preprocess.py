"""Face crop to emotion-model input, driven by the manifest so device and export agree exactly.

`preprocessing` in a face-emotion manifest: {"color": "gray" | "rgb", "size": [h, w],
"scale": s, "offset": o, "crop_margin": m}; pixel values (0..255) become value * s + o.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def crop_to_input(crop: np.ndarray, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """One RGB or grayscale uint8 crop -> float32 (h, w, c) model input."""
    import cv2

    height, width = preprocessing["size"]
    if crop.ndim == 3 and preprocessing["color"] == "gray":
        crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    elif crop.ndim == 2 and preprocessing["color"] == "rgb":
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
    interpolation = cv2.INTER_AREA if crop.shape[0] > height else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (width, height), interpolation=interpolation).astype(np.float32)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    return resized * float(preprocessing["scale"]) + float(preprocessing["offset"])


def crops_to_batch(crops: list[np.ndarray], preprocessing: Mapping[str, Any]) -> np.ndarray:
    return np.stack([crop_to_input(crop, preprocessing) for crop in crops]).astype(np.float32)
