"""The built-in demo input: a 640x480 MJPG video made from real face photos, no camera needed.

Faces come from scikit-image's photos (the smiling astronaut, the cameraman) and drift across a
plain background so the tracker and smoothing have something to do: one face, then two, then
three, then the third leaves.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS, SECONDS = 640, 480, 15, 12


def _photo_patches() -> list[np.ndarray]:
    """Head-and-shoulders patches around each photo's face (RGB uint8)."""
    import cv2
    from skimage import data

    astronaut = data.astronaut()[30:260, 110:340]
    camera = np.stack([data.camera()] * 3, axis=-1)[70:260, 125:315]
    return [cv2.resize(astronaut, (220, 220)), cv2.resize(camera, (200, 200)),
            cv2.resize(astronaut[:, ::-1], (200, 200))]


def frames(width: int = WIDTH, height: int = HEIGHT, fps: int = FPS, seconds: int = SECONDS):
    """RGB frames of the demo scene."""
    patches = _photo_patches()
    total = fps * seconds
    yy, xx = np.mgrid[0:height, 0:width]
    background = (90 + 40 * xx / width + 20 * yy / height).astype(np.uint8)
    background = np.stack([background, background, background + 10], axis=-1)
    for index in range(total):
        t = index / total
        frame = background.copy()
        placements = [(patches[0], 20 + 100 * t, 40 + 20 * np.sin(6 * t))]
        if t > 0.2:
            placements.append((patches[1], 420 - 40 * t, 30 + 15 * np.cos(5 * t)))
        if 0.45 < t < 0.85:
            placements.append((patches[2], 220 + 40 * np.sin(4 * t), 270))
        for patch, x, y in placements:
            x, y = int(x), int(y)
            h, w = patch.shape[:2]
            h, w = min(h, height - y), min(w, width - x)
            frame[y:y + h, x:x + w] = patch[:h, :w]
        yield frame


def build_demo_video(path: Path) -> Path:
    """Write the demo video once (atomically); later calls reuse it."""
    import cv2

    path = Path(path)
    if path.is_file() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.avi")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MJPG video here")
    for frame in frames():
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    os.replace(tmp, path)
    return path


def default_demo_path() -> Path:
    cache = Path(os.environ.get("EMOTION_EDGE_CACHE", Path.home() / ".cache" / "emotion-edge"))
    return cache / "demo" / "demo_faces_640x480.avi"
