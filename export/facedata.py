"""Real face crops for int8 calibration and parity checks (never random noise).

Built-in set, available offline: the 100 face images of scikit-image's LFW subset plus the
faces BlazeFace finds in scikit-image's astronaut and cameraman photos, each with geometric and
photometric augmentations. Faces are split by image between calibration and validation, so the
parity figures are measured on faces the quantizer never saw. A user can supply a FER2013 CSV
(emotion,pixels[,Usage]) or a folder of photos (faces are found with BlazeFace).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.face.detector import FaceDetector, square_crop_box

from .errors import ExportError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class FaceSet:
    """Grayscale-or-RGB uint8 face crops for calibration and for validation, and where they came from."""

    calibration: list[np.ndarray]
    validation: list[np.ndarray]
    description: str


def augment(crop: np.ndarray, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Plausible camera variations of one face: flip, rotation, zoom/shift, light, blur, noise."""
    import cv2

    height, width = crop.shape[:2]
    variants = [crop]
    for _ in range(count):
        image = crop[:, ::-1] if rng.random() < 0.5 else crop
        angle = rng.uniform(-12, 12)
        zoom = rng.uniform(0.9, 1.12)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, zoom)
        matrix[:, 2] += rng.uniform(-0.06, 0.06, size=2) * (width, height)
        image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
        image = image.astype(np.float32) * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25)
        if rng.random() < 0.3:
            image = cv2.GaussianBlur(image, (3, 3), 0)
        image = image + rng.normal(0, rng.uniform(0, 6), size=image.shape)
        variants.append(np.clip(image, 0, 255).astype(np.uint8))
    return variants


def mild_variants(crop: np.ndarray, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Geometric-only variants for calibration: min-max calibration on extreme lighting stretches the
    activation ranges and costs int8 resolution (measured: 95% vs 97% top-1 agreement)."""
    import cv2

    height, width = crop.shape[:2]
    variants = [crop]
    for _ in range(count):
        image = crop[:, ::-1] if rng.random() < 0.5 else crop
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-6, 6), rng.uniform(0.95, 1.05))
        variants.append(cv2.warpAffine(np.ascontiguousarray(image), matrix, (width, height),
                                       borderMode=cv2.BORDER_REFLECT))
    return variants


def detect_face_crops(image_rgb: np.ndarray, detector: FaceDetector, margin: float = 0.15) -> list[np.ndarray]:
    crops = []
    for face in detector.detect(image_rgb):
        x0, y0, x1, y1 = square_crop_box(face, image_rgb.shape, margin)
        if x1 - x0 >= 16 and y1 - y0 >= 16:
            crops.append(image_rgb[y0:y1, x0:x1].copy())
    return crops


def builtin_faces(detector: FaceDetector, seed: int = 0, augmentations: int = 4) -> FaceSet:
    """LFW-subset faces and the photos' faces, split by image, augmented."""
    from skimage import data

    rng = np.random.default_rng(seed)
    lfw = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)  # the first 100 are faces
    photo_faces = []
    for name in ("astronaut", "camera"):
        image = getattr(data, name)()
        rgb = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image
        photo_faces += detect_face_crops(rgb, detector)
    if len(photo_faces) < 2:
        raise ExportError("BlazeFace found no face in scikit-image's photos: the detector artifact is broken")
    base = [face for face in lfw] + photo_faces
    calibration, validation = [], []
    for index, face in enumerate(base):
        if index % 2 == 0:
            calibration += mild_variants(face, rng, 6)
        else:
            validation += augment(face, rng, augmentations)
    return FaceSet(calibration, validation,
                   f"scikit-image LFW subset (100 faces) + astronaut/cameraman faces, split by image; calibration "
                   f"with 6 mild geometric variants, validation with {augmentations} flip/rotation/zoom/light/blur/noise "
                   "augmentations")


def fer2013_faces(csv_path: Path, limit: int = 2000) -> FaceSet:
    """FER2013's CSV: Training rows calibrate, PublicTest/PrivateTest rows validate (split by row if no Usage)."""
    calibration, validation = [], []
    try:
        with open(csv_path, newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "pixels" not in reader.fieldnames:
                raise ExportError(f"{csv_path} is not a FER2013 CSV: it needs a 'pixels' column (emotion,pixels,Usage)")
            for row_number, row in enumerate(reader):
                values = np.array(row["pixels"].split(), dtype=np.float32)
                side = int(round(np.sqrt(values.size)))
                if side * side != values.size or side < 16:
                    raise ExportError(f"{csv_path} row {row_number + 2}: 'pixels' is not a square image")
                face = values.reshape(side, side).clip(0, 255).astype(np.uint8)
                usage = row.get("Usage") or ("Training" if row_number % 2 == 0 else "Test")
                target = calibration if usage == "Training" else validation
                if len(target) < limit:
                    target.append(face)
                if len(calibration) >= limit and len(validation) >= limit:
                    break
    except OSError as exc:
        raise ExportError(f"cannot read FER2013 CSV {csv_path}: {exc}") from None
    except ValueError:
        raise ExportError(f"{csv_path}: 'pixels' must hold space-separated numbers") from None
    if not calibration or not validation:
        raise ExportError(f"{csv_path} needs faces for both calibration (Training) and validation (test rows)")
    return FaceSet(calibration, validation, f"FER2013 CSV {csv_path.name}")


def folder_faces(folder: Path, detector: FaceDetector, seed: int = 0, augmentations: int = 2) -> FaceSet:
    """Faces BlazeFace finds in a folder of photos, split by photo."""
    import cv2

    if not folder.is_dir():
        raise ExportError(f"calibration folder {folder} does not exist")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ExportError(f"calibration folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    rng = np.random.default_rng(seed)
    calibration, validation = [], []
    for index, path in enumerate(images):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        crops = detect_face_crops(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), detector)
        target = calibration if index % 2 == 0 else validation
        for crop in crops:
            target += augment(crop, rng, augmentations)
    if not calibration and not validation:
        raise ExportError(
            f"no faces found in the {len(images)} images of {folder}; give photos with visible frontal faces "
            "(at least 24 px wide), or use --fer2013-csv"
        )
    if not calibration or not validation:
        only = calibration or validation
        half = len(only) // 2
        calibration, validation = only[:half] or only, only[half:] or only
    return FaceSet(calibration, validation, f"faces detected in {len(images)} photos of {folder}")


CALIBRATION_BACKDROPS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "brick",
                         "grass", "moon", "page")
CHECK_BACKDROPS = ("retina", "gravel", "coins", "colorwheel", "clock")


def _backdrop(name: str, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random 4:3 window of one scikit-image photo, scaled to width x height RGB."""
    import cv2
    from skimage import data

    image = getattr(data, name)()
    image = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]
    rows, cols = image.shape[:2]
    crop_w = int(min(cols, rows * 4 / 3) * rng.uniform(0.6, 1.0))
    crop_h = int(crop_w * 3 / 4)
    x, y = rng.integers(0, cols - crop_w + 1), rng.integers(0, rows - crop_h + 1)
    return cv2.resize(np.ascontiguousarray(image[y:y + crop_h, x:x + crop_w]), (width, height),
                      interpolation=cv2.INTER_AREA)


def _face_scene(backdrop: np.ndarray, faces: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """`backdrop` with each face pasted at a random size (60 to 220 px) and place."""
    import cv2

    scene = backdrop.copy()
    height, width = scene.shape[:2]
    for face in faces:
        side = int(rng.integers(60, 221))
        patch = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        patch = np.stack([patch] * 3, axis=-1) if patch.ndim == 2 else patch
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        scene[y:y + side, x:x + side] = patch
    return scene


def detector_scenes(seed: int = 0, count: int = 48) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """640x480 RGB scenes to calibrate the int8 detector on, and others to check it on, sharing no photo.

    Calibration: the even-numbered LFW-subset faces pasted (zero to three at a time) on windows of
    scikit-image photos without faces. Check: the built-in demo video's frames (the astronaut and
    cameraman faces), those two photos and their mirror images, and the odd-numbered LFW faces on
    other backdrops.
    """
    from skimage import data

    from edge.demo import HEIGHT, WIDTH, frames

    rng = np.random.default_rng(seed)
    lfw = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)
    calibration_faces, check_faces = lfw[0::2], lfw[1::2]

    def scenes(backdrops: tuple[str, ...], faces: np.ndarray, total: int) -> list[np.ndarray]:
        built = []
        for index in range(total):
            backdrop = _backdrop(backdrops[index % len(backdrops)], rng, WIDTH, HEIGHT)
            chosen = rng.choice(len(faces), size=index % 4, replace=False)
            built.append(_face_scene(backdrop, [faces[i] for i in chosen], rng))
        return built

    calibration = scenes(CALIBRATION_BACKDROPS, calibration_faces, count)
    check = [frame for index, frame in enumerate(frames()) if index % 2 == 0]
    for name in ("astronaut", "camera"):
        image = getattr(data, name)()
        rgb = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image
        check += [rgb, np.ascontiguousarray(rgb[:, ::-1])]
    check += scenes(CHECK_BACKDROPS, check_faces, count // 2)
    description = (f"calibration: {len(calibration)} scenes of the even LFW-subset faces on face-free scikit-image "
                   f"photos; check: {len(check)} images (every 2nd demo video frame, the astronaut and cameraman "
                   f"photos and mirror images, odd LFW faces on other photos)")
    return calibration, check, description


def aspect_variants(images: list[np.ndarray]) -> list[np.ndarray]:
    """`images` plus a 16:9 and a portrait (3:4) centre crop of each 4:3 one, so a detector that runs on an
    input fitted to the frame shape is checked on the shapes cameras deliver, not only on 4:3."""
    out = list(images)
    for image in images:
        height, width = image.shape[:2]
        if width * 3 != height * 4:
            continue
        wide_h, tall_w = width * 9 // 16, height * 3 // 4
        top, left = (height - wide_h) // 2, (width - tall_w) // 2
        out.append(np.ascontiguousarray(image[top:top + wide_h]))
        out.append(np.ascontiguousarray(image[:, left:left + tall_w]))
    return out


ROOM_FACE_WIDTH = (0.06, 0.12)  # a face's share of the frame width from 2 to 4 m with a living-room camera


@dataclass
class RoomScene:
    """A 640x480 RGB group scene and the box (x0, y0, x1, y1) of every face pasted into it."""

    image: np.ndarray
    faces: list[tuple[int, int, int, int]]


# The face box (x0, y0, x1, y1) the published short-range BlazeFace finds in each full-size photo: a head
# template is the photo around it (hair, neck, shoulders), and the face's size is this box's width.
HEAD_PHOTOS = {"astronaut": (178, 81, 272, 175), "camera": (180, 121, 264, 205)}


def _lfw_templates() -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """The odd-numbered LFW-subset faces (calibration only ever uses the even ones): tight 25x25 crops."""
    from skimage import data

    lfw = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)[1::2]
    return [(np.stack([face] * 3, axis=-1), (0, 0, 25, 25)) for face in lfw]


def _head_templates() -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Head-and-shoulders windows of the astronaut and cameraman photos and their mirror images."""
    from skimage import data

    templates = []
    for name, (x0, y0, x1, y1) in HEAD_PHOTOS.items():
        image = getattr(data, name)()
        rgb = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image
        side = x1 - x0
        left, top = max(0, x0 - side * 3 // 5), max(0, y0 - side * 3 // 5)
        right, bottom = min(rgb.shape[1], x1 + side * 3 // 5), min(rgb.shape[0], y1 + side)
        window = np.ascontiguousarray(rgb[top:bottom, left:right])
        box = (x0 - left, y0 - top, x1 - left, y1 - top)
        width = window.shape[1]
        templates += [(window, box),
                      (np.ascontiguousarray(window[:, ::-1]), (width - box[2], box[1], width - box[0], box[3]))]
    return templates


def room_scenes(seed: int = 0, count: int = 40, faces_per_scene: tuple[int, int] = (4, 10),
                face_width: tuple[float, float] = ROOM_FACE_WIDTH, kind: str = "lfw") -> list[RoomScene]:
    """Group scenes as a living-room camera sees them: held-out real faces, small, several per frame.

    kind "lfw": the odd-numbered LFW-subset faces (tight crops: face only); kind "heads": head-and-shoulders
    windows of the astronaut and cameraman photos (two people, with the context a camera sees). 4 to 10 per
    frame, never overlapping, each face at 6 to 12% of the frame width and its own brightness and contrast,
    on windows of the scikit-image photos that no calibration uses (CHECK_BACKDROPS). Boxes are the faces'.
    """
    import cv2

    from edge.demo import HEIGHT, WIDTH

    templates = {"lfw": _lfw_templates, "heads": _head_templates}[kind]()
    rng = np.random.default_rng(seed)
    scenes = []
    for index in range(count):
        scene = _backdrop(CHECK_BACKDROPS[index % len(CHECK_BACKDROPS)], rng, WIDTH, HEIGHT)
        wanted = int(rng.integers(faces_per_scene[0], faces_per_scene[1] + 1))
        taken: list[tuple[int, int, int, int]] = []  # pasted windows
        boxes: list[tuple[int, int, int, int]] = []
        for choice in rng.choice(len(templates), size=wanted, replace=len(templates) < wanted):
            template, (fx0, fy0, fx1, fy1) = templates[choice]
            scale = WIDTH * rng.uniform(*face_width) / (fx1 - fx0)
            height, width = (max(1, round(n * scale)) for n in template.shape[:2])
            if width > WIDTH or height > HEIGHT:
                continue
            gap = max(2, width // 8)
            for _ in range(200):  # a free place, a little apart from the others
                x, y = int(rng.integers(0, WIDTH - width + 1)), int(rng.integers(0, HEIGHT - height + 1))
                if all(x + width + gap <= a or a2 + gap <= x or y + height + gap <= b or b2 + gap <= y
                       for a, b, a2, b2 in taken):
                    break
            else:
                continue
            shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            patch = cv2.resize(template, (width, height), interpolation=shrink).astype(np.float32)
            scene[y:y + height, x:x + width] = np.clip(patch * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20),
                                                       0, 255).astype(np.uint8)
            taken.append((x, y, x + width, y + height))
            boxes.append((x + round(fx0 * scale), y + round(fy0 * scale),
                          x + round(fx1 * scale), y + round(fy1 * scale)))
        scenes.append(RoomScene(scene, boxes))
    return scenes
