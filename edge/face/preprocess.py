"""Face crop to emotion-model input, driven by the manifest so device and export agree exactly.

`preprocessing` in a face-emotion manifest: {"color": "gray" | "rgb", "size": [h, w],
"scale": s, "offset": o, "crop_margin": m}; pixel values (0..255) become value * s + o.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def crop_pixels(crop: np.ndarray, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """One RGB or grayscale uint8 crop -> uint8 (h, w, c) at the model's size and colour."""
    import cv2

    height, width = preprocessing["size"]
    if crop.ndim == 3 and preprocessing["color"] == "gray":
        crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    elif crop.ndim == 2 and preprocessing["color"] == "rgb":
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
    interpolation = cv2.INTER_AREA if crop.shape[0] > height else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (width, height), interpolation=interpolation)
    return resized[:, :, None] if resized.ndim == 2 else resized


def to_input_range(pixels: np.ndarray, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """uint8 pixels -> the model's float32 input values."""
    return pixels.astype(np.float32) * float(preprocessing["scale"]) + float(preprocessing["offset"])


def crop_to_input(crop: np.ndarray, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """One RGB or grayscale uint8 crop -> float32 (h, w, c) model input."""
    return to_input_range(crop_pixels(crop, preprocessing), preprocessing)


def crops_to_batch(crops: list[np.ndarray], preprocessing: Mapping[str, Any],
                   table: np.ndarray | None = None) -> np.ndarray:
    """A float32 batch, or with `table` (backends.base.pixel_table over to_input_range) the quantized batch
    the model takes as is."""
    if table is None:
        return np.stack([crop_to_input(crop, preprocessing) for crop in crops]).astype(np.float32)
    import cv2

    return np.stack([cv2.LUT(crop_pixels(crop, preprocessing), table).reshape(
        *preprocessing["size"], -1) for crop in crops])
