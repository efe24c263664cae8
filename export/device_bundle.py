"""Build the offline device bundle: one tarball with everything a Pi, Jetson or x86_64 box needs.

The device has no network at install time, so the bundle carries the project's wheel, every
runtime wheel of the hash-pinned lock built for the target's Python and CPU, the exported
models, liblsl (taken from a pinned mne-lsl wheel, because pylsl's aarch64 wheel has none), the
systemd unit, the target's config and the installer. The lock's markers are evaluated here for
the target (pip would evaluate them for the workstation's Python), and the filtered lock goes
into the bundle as wheels/runtime.lock, so the installer installs exactly the wheels shipped.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from edge import __version__
from edge.errors import EdgeError
from edge.manifest import SCHEMA as MANIFEST_SCHEMA
from edge.manifest import load_manifest, sha256_file

from .errors import ExportError

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware_config"
BUNDLE_SCHEMA = "emotion-edge/bundle/1"
INSTALL_PREFIX = "/opt/emotion-edge"


@dataclass(frozen=True)
class LiblslWheel:
    """The mne-lsl wheel liblsl.so is taken from, pinned by the sha256 measured when it was chosen."""

    version: str
    filename: str
    sha256: str


@dataclass(frozen=True)
class Target:
    name: str
    machine: str
    python: str           # X.Y of the target's system python3
    python_full: str      # for the lock's python_full_version markers
    glibc: tuple[int, int]
    system: str
    profile: str | None   # firmware_config/profiles/<profile>; None: `emotion-edge defaults`
    system_site_packages: bool
    exclude: tuple[str, ...]
    liblsl: LiblslWheel

    @property
    def platforms(self) -> list[str]:
        """manylinux tags from 2014 (= glibc 2.17) up to the target's glibc, newest first."""
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(self.glibc[1], 16, -1)]
        return tags + [f"manylinux2014_{self.machine}"]

    def supported_tags(self) -> list[Tag]:
        version = tuple(int(part) for part in self.python.split("."))
        abi = "cp" + self.python.replace(".", "")
        return [*cpython_tags(version, [abi], self.platforms),
                *compatible_tags(version, abi, self.platforms)]

    def marker_environment(self) -> dict[str, str]:
        return {
            "implementation_name": "cpython", "implementation_version": self.python_full, "os_name": "posix",
            "platform_machine": self.machine, "platform_python_implementation": "CPython",
            "platform_release": "", "platform_system": "Linux", "platform_version": "",
            "python_full_version": self.python_full, "python_version": self.python, "sys_platform": "linux",
        }


TARGETS = {
    "pi-aarch64": Target(
        "pi-aarch64", "aarch64", "3.11", "3.11.2", (2, 36), "Raspberry Pi OS Bookworm (Debian 12 arm64)",
        "raspberry-pi-kiosk.toml", True, (),
        LiblslWheel("1.14.0", "mne_lsl-1.14.0-cp311-abi3-manylinux_2_26_aarch64.manylinux_2_28_aarch64.whl",
                    "493fda6bb2131e2cc916f1a67af875959110514dff4f8a5f635acba9a5fa8c5d")),
    # JetPack's cv2 (GStreamer, for nvarguscamerasrc) comes through --system-site-packages; pip's
    # OpenCV would shadow it, so the wheelhouse leaves it out.
    "jetson-aarch64": Target(
        "jetson-aarch64", "aarch64", "3.10", "3.10.12", (2, 35), "JetPack 6 (Ubuntu 22.04 arm64)",
        "jetson-lab.toml", True, ("opencv-python-headless",),
        LiblslWheel("1.12.0", "mne_lsl-1.12.0-cp310-abi3-manylinux_2_26_aarch64.manylinux_2_28_aarch64.whl",
                    "f754bd950bf561144338fdf50f5c91df7e92d804e68344b3d9f84ef85f18ca22")),
    "x86_64": Target(
        "x86_64", "x86_64", "3.11", "3.11.2", (2, 36), "Debian 12 x86_64",
        None, False, (),
        LiblslWheel("1.14.0", "mne_lsl-1.14.0-cp311-abi3-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
                    "7934311a76ed8f379d0c7ce163e8050e4aebb47efe59ae95d006a4a7b4af52b0")),
}


@dataclass
class Pin:
    name: str
    version: str
    hashes: frozenset[str]

    def lock_lines(self) -> str:
        hashes = " \\\n".join(f"    --hash=sha256:{digest}" for digest in sorted(self.hashes))
        return f"{self.name}=={self.version} \\\n{hashes}\n"


def default_cache() -> Path:
    return Path(os.environ.get("EMOTION_EDGE_CACHE", Path.home() / ".cache" / "emotion-edge")) / "bundle-wheels"


def read_lock(path: Path, target: Target) -> list[Pin]:
    """The lock's pins whose markers hold on the target, minus the target's exclusions."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pins, environment = [], target.marker_environment()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *hash_parts = line.split("--hash=")
        requirement = Requirement(spec.strip())
        if requirement.marker is not None and not Marker(str(requirement.marker)).evaluate(environment):
            continue
        if canonicalize_name(requirement.name) in target.exclude:
            continue
        versions = [item.version for item in requirement.specifier if item.operator == "=="]
        if len(versions) != 1 or not hash_parts:
            raise ExportError(f"{path}: `{spec.strip()}` is not an exact hash-pinned line; regenerate the "
                              "lock with `bash firmware_config/locks/update.sh`")
        hashes = frozenset(part.strip().removeprefix("sha256:") for part in hash_parts)
        pins.append(Pin(canonicalize_name(requirement.name), versions[0], hashes))
    if not pins:
        raise ExportError(f"{path} has no requirements for {target.name}")
    return pins


def find_wheel(cache: Path, pin: Pin, tags: list[Tag]) -> Path | None:
    """The best wheel for the target in the cache that the lock allows, or None."""
    rank = {tag: index for index, tag in enumerate(tags)}
    best: tuple[int, Path] | None = None
    for path in cache.glob("*.whl"):
        try:
            name, version, _, file_tags = parse_wheel_filename(path.name)
        except ValueError:
            continue
        if name != pin.name or str(version) != pin.version:
            continue
        score = min((rank[tag] for tag in file_tags if tag in rank), default=None)
        if score is None or (best is not None and score >= best[0]):
            continue
        if sha256_file(path) in pin.hashes:
            best = (score, path)
    return best[1] if best else None


def pip_download(pins: list[Pin], target: Target, cache: Path) -> None:
    """Fetch the missing wheels for the target into the cache (hash-checked by pip)."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("".join(pin.lock_lines() for pin in pins))
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
                   "--only-binary=:all:", *(f"--platform={tag}" for tag in target.platforms),
                   f"--python-version={target.python}", "--implementation=cp",
                   f"--abi=cp{target.python.replace('.', '')}", "--require-hashes", "-r", str(requirements),
                   "-d", str(cache)]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or ["pip failed"]
        raise ExportError(f"downloading wheels for {target.name} failed ({errors[0]}); "
                          "check the connection to PyPI and build again")


def collect_wheels(pins: list[Pin], target: Target, cache: Path) -> list[Path]:
    tags = target.supported_tags()
    missing = [pin for pin in pins if find_wheel(cache, pin, tags) is None]
    if missing:
        print(f"downloading {len(missing)} wheels for {target.name} into {cache}", flush=True)
        pip_download(missing, target, cache)
    wheels = []
    for pin in pins:
        wheel = find_wheel(cache, pin, tags)
        if wheel is None:
            raise ExportError(f"no wheel of {pin.name}=={pin.version} for {target.name} (Python {target.python}, "
                              f"{target.machine}) matches the lock's hashes; regenerate the lock")
        wheels.append(wheel)
    return wheels


def fetch_liblsl(target: Target, cache: Path, work: Path) -> tuple[Path, str]:
    """Extract liblsl.so from the pinned mne-lsl wheel; returns (path, liblsl version)."""
    pinned = target.liblsl
    wheel = cache / pinned.filename
    if not wheel.is_file():
        print(f"downloading mne-lsl {pinned.version} for liblsl ({target.name})", flush=True)
        pip_download([Pin("mne-lsl", pinned.version, frozenset({pinned.sha256}))], target, cache)
    if not wheel.is_file():
        raise ExportError(f"PyPI gave no {pinned.filename}; the liblsl pin in export/device_bundle.py needs updating")
    actual = sha256_file(wheel)
    if actual != pinned.sha256:
        raise ExportError(f"{wheel} has sha256 {actual}, not the pinned {pinned.sha256}: delete it and build again")
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if re.fullmatch(r"mne_lsl/lsl/lib/liblsl\.so(\.[\d.]+)?", name)]
        if not members:
            raise ExportError(f"{wheel} contains no mne_lsl/lsl/lib/liblsl.so*")
        out = work / "liblsl.so"
        out.write_bytes(archive.read(members[0]))
    return out, members[0].rsplit(".so", 1)[1].lstrip(".") or "unknown"


def build_project_wheel(work: Path) -> Path:
    """Build from a copy of the checkout: setuptools writes build/ in the source tree, which concurrent builds share."""
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".cache", "build", "dist", "models", ".venv", "*.egg-info", "__pycache__", ".pytest_cache"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
                             "-q", "-w", str(work), str(source)], capture_output=True, text=True)
    wheels = sorted(work.glob("emotion_edge-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise ExportError(f"building the emotion-edge wheel from {ROOT} failed: {tail}")
    return wheels[0]


def check_models(directory: Path, modality: str, needed: tuple[str, ...] = ()) -> list[Path]:
    """Every file of an exported model directory, after the runtime's own manifest checks."""
    fix = f"export them with `emotion-export {modality} --out {directory}`"
    if not directory.is_dir():
        raise ExportError(f"{modality} models not found in {directory}: {fix}")
    manifests = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("schema") == MANIFEST_SCHEMA:
            try:
                manifests.append(load_manifest(path))
            except EdgeError as exc:
                raise ExportError(f"{modality} models in {directory} are not usable ({exc})") from None
    if not manifests:
        raise ExportError(f"{modality} models not found in {directory} (no model manifests): {fix}")
    present = {manifest.artifact_path.name for manifest in manifests}
    for name in needed:
        if name not in present:
            raise ExportError(f"{directory} has no {name}, which the {modality} config of this target uses: {fix}")
    return sorted(path for path in directory.iterdir() if path.is_file())


def target_config(target: Target) -> str:
    """The config.toml the device gets: the target's profile, or the documented defaults for x86_64."""
    if target.profile:
        return (FIRMWARE / "profiles" / target.profile).read_text()
    from edge.config import defaults_toml

    values = {("device", "data_dir"): "/var/lib/emotion-edge",
              ("face", "models"): f"{INSTALL_PREFIX}/models/face",
              ("voice", "models"): f"{INSTALL_PREFIX}/models/voice"}
    section, lines = "", []
    for line in defaults_toml().splitlines():
        header = re.fullmatch(r"\[(\w+)\]", line)
        section = header.group(1) if header else section
        key = line.split(" = ", 1)[0]
        if (section, key) in values and " = " in line:
            line = f'{key} = "{values[(section, key)]}"'
        lines.append(line)
    return "\n".join(lines) + "\n"


def configured_face_files(config_text: str) -> tuple[str, ...]:
    from edge.config import build_config, tomllib

    face = build_config(tomllib.loads(config_text), "bundle config").sections["face"]
    return (face.detector, face.emotion)


def build_bundle(target_name: str, face_models: Path, voice_models: Path, out_dir: Path,
                 cache: Path | None = None) -> Path:
    """Write dist/emotion-edge-<version>-<target>.tar.gz atomically and return its path."""
    if target_name not in TARGETS:
        raise ExportError(f"unknown target {target_name}; choose one of {', '.join(TARGETS)}")
    if not (FIRMWARE / "install_device.sh").is_file():
        raise ExportError(f"{FIRMWARE} not found: run `emotion-export bundle` from a checkout of the emotion-edge repository")
    target = TARGETS[target_name]
    cache = cache or default_cache()
    config_text = target_config(target)
    face_files = check_models(face_models, "face", configured_face_files(config_text))
    voice_files: list[Path] = []
    if voice_models.exists():
        voice_files = check_models(voice_models, "voice")
    else:
        print(f"note: {voice_models} not found, so the bundle has no voice models "
              f"(make them with `emotion-export voice --out {voice_models}`)")
    pins = read_lock(FIRMWARE / "locks" / "runtime.txt", target)
    wheels = collect_wheels(pins, target, cache)
    stem = f"emotion-edge-{__version__}-{target.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        liblsl, liblsl_version = fetch_liblsl(target, cache, work)
        project_wheel = build_project_wheel(work)
        lock = work / "runtime.lock"
        lock.write_text(f"# firmware_config/locks/runtime.txt for {target.name}: markers evaluated for Python "
                        f"{target.python_full} on {target.machine} (excluded: {', '.join(target.exclude) or 'none'})\n"
                        + "".join(pin.lock_lines() for pin in pins))
        config = work / "config.toml"
        config.write_text(config_text)
        files: list[tuple[str, Path]] = [
            ("install.sh", FIRMWARE / "install_device.sh"),
            ("systemd/emotion-edge.service", FIRMWARE / "systemd" / "emotion-edge.service"),
            ("config/config.toml", config),
            ("liblsl/liblsl.so", liblsl),
            ("wheels/runtime.lock", lock),
            (f"wheels/{project_wheel.name}", project_wheel),
            *((f"wheels/{wheel.name}", wheel) for wheel in wheels),
            *((f"models/face/{path.name}", path) for path in face_files),
            *((f"models/voice/{path.name}", path) for path in voice_files),
        ]
        manifest = {
            "schema": BUNDLE_SCHEMA, "project": "emotion-edge", "version": __version__, "target": target.name,
            "machine": target.machine, "python": target.python, "system": target.system,
            "system_site_packages": target.system_site_packages,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "excluded_packages": list(target.exclude),
            "liblsl": {"version": liblsl_version, "from": target.liblsl.filename, "wheel_sha256": target.liblsl.sha256},
            "voice_models": bool(voice_files),
            "files": {name: sha256_file(path) for name, path in files},
        }
        manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode()
        final = out_dir / f"{stem}.tar.gz"
        handle, partial = tempfile.mkstemp(prefix=f".{stem}.", suffix=".partial", dir=out_dir)
        try:
            with os.fdopen(handle, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                _add_directories(tar, stem, [name for name, _ in files])
                _add_bytes(tar, f"{stem}/bundle.json", manifest_bytes)
                for name, path in files:
                    info = tar.gettarinfo(str(path), f"{stem}/{name}")
                    _normalise(info, 0o755 if name == "install.sh" else 0o644)
                    with open(path, "rb") as source:
                        tar.addfile(info, source)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(partial, 0o666 & ~umask)  # mkstemp's 0600 would keep the bundle from other users
            os.replace(partial, final)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    size_mb = final.stat().st_size / 1e6
    print(f"wrote {final}: {len(files) + 1} files, {size_mb:.1f} MB ({len(wheels) + 1} wheels, "
          f"{len(face_files)} face and {len(voice_files)} voice model files, liblsl {liblsl_version}) "
          f"for {target.system}, Python {target.python}")
    return final


def _normalise(info: tarfile.TarInfo, mode: int) -> None:
    """Root-owned, world-readable entries: the exporter's 0700 directories must not reach the device."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = mode


def _add_directories(tar: tarfile.TarFile, stem: str, names: list[str]) -> None:
    directories = {stem}
    for name in names:
        parts = name.split("/")[:-1]
        directories.update(f"{stem}/" + "/".join(parts[:index + 1]) for index in range(len(parts)))
    for directory in sorted(directories):
        info = tarfile.TarInfo(directory)
        info.type = tarfile.DIRTYPE
        info.mtime = int(datetime.now(timezone.utc).timestamp())
        _normalise(info, 0o755)
        tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(datetime.now(timezone.utc).timestamp())
    _normalise(info, 0o644)
    tar.addfile(info, io.BytesIO(data))
