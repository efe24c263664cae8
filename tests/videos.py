"""Small MJPG .avi test videos made from real photos shipped with scikit-image.

Each frame is a different crop of a photo (a slow pan), so a test can tell which frame it
received by comparing with the reference frames, independent of any counter in the code under test.
"""

from __future__ import annotations

import os
import tempfile

import cv2
import numpy as np
from skimage import data

SIZE = (160, 120)  # width, height of every test video


def photo(name: str = "astronaut") -> np.ndarray:
    """A real RGB photo: "astronaut" (colour) or "camera" (grey, as RGB)."""
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image


def pan_frames(count: int, name: str = "astronaut", step: int = 12, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """`count` RGB frames panning across the photo, `step` source pixels per frame."""
    image = photo(name)
    width, height = size
    crop_w = crop_h = 256
    frames = []
    for i in range(count):
        x = (i * step) % (image.shape[1] - crop_w)
        y = (i * step // 2) % (image.shape[0] - crop_h)
        crop = np.ascontiguousarray(image[y:y + crop_h, x:x + crop_w])
        frames.append(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA))
    return frames


def write_mjpg(path: str, frames: list[np.ndarray], fps: float) -> str:
    """Write RGB frames as an MJPG .avi, atomically (temp file, then os.replace)."""
    height, width = frames[0].shape[:2]
    directory = os.path.dirname(os.path.abspath(path))
    handle, temp = tempfile.mkstemp(suffix=".avi", dir=directory)
    os.close(handle)
    writer = cv2.VideoWriter(temp, cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        os.unlink(temp)
        raise RuntimeError("OpenCV cannot write MJPG .avi files here")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    os.replace(temp, path)
    return path


def identify(image: np.ndarray, references: list[np.ndarray]) -> tuple[int, float]:
    """Index of the reference frame nearest to `image`, and its mean absolute difference."""
    diffs = [float(np.mean(np.abs(image.astype(np.int16) - ref.astype(np.int16)))) for ref in references]
    best = int(np.argmin(diffs))
    return best, diffs[best]
