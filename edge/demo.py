"""The built-in demo input: a 640x480 video made from real face photos, no camera needed.

Faces come from two photos shipped in `edge/demo/` (the smiling astronaut, the cameraman; see
LICENSE-photos.txt there) and drift across a plain background so the tracker and smoothing have
something to do: one face, then two, then three, then the third leaves. The photos are stored as
the exact resized patches, so the frames are the same pixels on every machine and need nothing
beyond OpenCV and numpy.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import EdgeError

WIDTH, HEIGHT, FPS, SECONDS = 640, 480, 15, 12
# The patches, cut once from scikit-image 0.26.0's data.astronaut() [30:260, 110:340] and data.camera()
# [70:260, 125:315] and resized with cv2.resize (the astronaut also mirrored); lossless PNG.
PATCH_FILES = ("astronaut_220.png", "cameraman_200.png", "astronaut_mirrored_200.png")
DEMO_VIDEO_NAME = f"demo_faces_{WIDTH}x{HEIGHT}.avi"


def _photo_patches() -> list[np.ndarray]:
    """Head-and-shoulders patches around each photo's face (RGB uint8), read from the package data."""
    import cv2

    patches = []
    for name in PATCH_FILES:
        try:
            data = (resources.files(__package__) / "demo" / name).read_bytes()
        except (FileNotFoundError, OSError):
            raise EdgeError(f"the demo photo edge/demo/{name} is missing from this install; reinstall emotion-edge "
                            "(pip install --force-reinstall 'emotion-edge[runtime]')") from None
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise EdgeError(f"the demo photo edge/demo/{name} is not a readable PNG; reinstall emotion-edge")
        patches.append(np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2
                       else cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return patches


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


def write_demo_video(path: Path, lossless: bool = False, seconds: int = SECONDS) -> Path:
    """Write the demo video to `path` through a temporary beside it, renamed only when complete.

    MJPG by default (small, what cameras send); `lossless` writes FFV1, whose decoded frames equal
    `frames()` exactly on every platform (MJPG decoders differ by 1 on some pixels between x86 and ARM).
    The temporary is removed on any failure, Ctrl-C or SIGTERM that unwinds (see `edge.cli`)."""
    import cv2

    path = Path(path)
    if path.suffix.lower() != ".avi":
        raise EdgeError(f"the demo video is an AVI file: name it *.avi, not {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp.avi")
    try:
        open(tmp, "xb").close()  # an unwritable directory fails here with OSError, not inside OpenCV
        codec = "FFV1" if lossless else "MJPG"
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), FPS, (WIDTH, HEIGHT))
        if not writer.isOpened():
            raise EdgeError(f"OpenCV cannot write {codec} video here; install opencv-python-headless>=4.8")
        try:
            for frame in frames(seconds=seconds):
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        if tmp.stat().st_size == 0:
            raise EdgeError(f"OpenCV wrote an empty {codec} video to {path.parent}; is the disk full?")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def build_demo_video(path: Path, seconds: int = SECONDS) -> Path:
    """The MJPG demo video at `path`, written once (atomically); later calls reuse it."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > 0:
        return path
    return write_demo_video(path, seconds=seconds)


def demo_cache_dir() -> Path:
    """Where `run --demo` keeps its video between runs: $EMOTION_EDGE_CACHE/demo or ~/.cache/emotion-edge/demo."""
    cache = os.environ.get("EMOTION_EDGE_CACHE")
    return (Path(cache) if cache else Path.home() / ".cache" / "emotion-edge") / "demo"


@contextlib.contextmanager
def demo_workspace():
    """The demo's video and a throwaway data directory (its MQTT spool), for the length of one run.

    The video is cached in `demo_cache_dir()` when that is writable; a service user with a read-only or
    absent home gets it in the private temporary directory instead. That directory also holds the spool,
    so demo events never mix with a configured runtime's spool, and it is removed when the run ends."""
    with tempfile.TemporaryDirectory(prefix="emotion-edge-demo-") as scratch:
        scratch = Path(scratch)
        try:
            video = build_demo_video(demo_cache_dir() / DEMO_VIDEO_NAME)
        except (OSError, RuntimeError):  # RuntimeError: no home directory at all
            video = write_demo_video(scratch / DEMO_VIDEO_NAME)
        yield video, scratch / "data"
