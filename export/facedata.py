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
