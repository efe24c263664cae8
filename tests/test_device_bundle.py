"""The device bundle, built for real for x86_64 and installed by its own installer without network.

The installer runs with EMOTION_EDGE_ROOT (everything under a temporary directory, no users or
systemd touched) and the existing user `nobody` as service user, inside `unshare --net`, so a
download attempt would fail. The arm64 end-to-end install runs in CI's arm64 root (.ci/).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from edge import __version__
from edge.config import load_config
from export.device_bundle import TARGETS, fetch_liblsl, read_lock
from export.errors import ExportError
from tests.conftest import CACHE, ROOT, run_export

STEM = f"emotion-edge-{__version__}-x86_64"
SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"  # the distribution's python3, as on a device
needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("unshare"),
                                reason="the installer test needs root, runuser and unshare")


def system_python_is_311() -> bool:
    result = subprocess.run(["python3", "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
                            capture_output=True, text=True, env={"PATH": SYSTEM_PATH})
    return result.stdout.strip() == "True"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def bundle(face_models, voice_models, tmp_path_factory) -> tuple[Path, str]:
    """One real x86_64 bundle per module: (tarball, the command's stdout)."""
    out = tmp_path_factory.mktemp("dist")
    result = run_export("bundle", "--target", "x86_64", "--face-models", str(face_models),
                        "--voice-models", str(voice_models), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out / f"{STEM}.tar.gz", result.stdout


@pytest.fixture(scope="module")
def workdir():
    """A world-traversable directory: the service user must reach the installed tree (pytest's is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="emotion-edge-bundle-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def unpacked(bundle, workdir) -> Path:
    with tarfile.open(bundle[0]) as tar:
        tar.extractall(workdir / "bundle", filter="tar")
    return workdir / "bundle" / STEM


def install(bundle_dir: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    """The bundle's install.sh as root, without network, into ROOT with `nobody` as the service user."""
    env = {"PATH": SYSTEM_PATH, "EMOTION_EDGE_ROOT": str(root), "EMOTION_EDGE_USER": "nobody", "LANG": "C.UTF-8"}
    return subprocess.run(["unshare", "--net", str(bundle_dir / "install.sh"), "--no-systemd", *args],
                          capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def installed(unpacked, workdir) -> tuple[Path, subprocess.CompletedProcess]:
    if os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("unshare"):
        pytest.skip("the installer test needs root, runuser and unshare")
    if not system_python_is_311():
        pytest.skip("the x86_64 bundle is for Python 3.11 and this machine's /usr/bin/python3 is not")
    root = workdir / "root"
    root.mkdir(mode=0o755)
    (unpacked / "models/face").chmod(0o700)  # as the exporter writes it, or as a umask-077 unpack leaves it
    (unpacked / "models/face/emotion.int8.tflite").chmod(0o600)
    return root, install(unpacked, root)


def test_bundle_holds_everything_the_device_needs(bundle, unpacked, face_models, voice_models):
    tarball, stdout = bundle
    assert f"wrote {tarball}" in stdout and " MB (" in stdout
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    assert {member.name.split("/")[0] for member in members} == {STEM}
    assert all(member.uid == 0 and member.mode == (0o755 if member.isdir() or member.name.endswith("install.sh")
                                                      else 0o644) for member in members)
    manifest = json.loads((unpacked / "bundle.json").read_text())
    assert (manifest["target"], manifest["machine"], manifest["python"]) == ("x86_64", "x86_64", "3.11")
    assert manifest["version"] == __version__ and manifest["created"].endswith("Z")
    listed = set(manifest["files"])
    on_disk = {str(path.relative_to(unpacked)) for path in unpacked.rglob("*") if path.is_file()}
    assert on_disk == listed | {"bundle.json"}
    assert all(sha256(unpacked / name) == digest for name, digest in manifest["files"].items())
    assert (unpacked / "install.sh").read_bytes() == (ROOT / "firmware_config/install_device.sh").read_bytes()
    assert (unpacked / "systemd/emotion-edge.service").read_bytes() == \
        (ROOT / "firmware_config/systemd/emotion-edge.service").read_bytes()
    for modality, source in (("face", face_models), ("voice", voice_models)):
        assert {path.name: sha256(path) for path in source.iterdir()} == \
            {path.name: sha256(path) for path in (unpacked / "models" / modality).iterdir()}
    assert list((unpacked / "wheels").glob(f"emotion_edge-{__version__}-*.whl"))
    lock = (unpacked / "wheels/runtime.lock").read_text()
    pinned = [line.split("==")[0] for line in lock.splitlines() if "==" in line]
    assert len(pinned) == len(set(pinned)) and "numpy" in pinned and "opencv-python-headless" in pinned
    assert len(list((unpacked / "wheels").glob("*.whl"))) == len(pinned) + 1
    assert (unpacked / "liblsl/liblsl.so").read_bytes()[:4] == b"\x7fELF"
    config = load_config(unpacked / "config/config.toml")
    assert config.sections["face"].models == "/opt/emotion-edge/models/face"


@needs_root
def test_installer_builds_a_working_venv_offline_from_the_wheelhouse(installed):
    root, result = installed
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config and models checked as user nobody: OK" in result.stdout
    venv = root / "opt/emotion-edge/venv"
    help_text = subprocess.run([str(venv / "bin/emotion-edge"), "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "check-config" in help_text.stdout
    assert subprocess.run([str(venv / "bin/python"), "-m", "pip", "check"], capture_output=True).returncode == 0
    liblsl = root / "opt/emotion-edge/lib/liblsl.so"
    probe = subprocess.run([str(venv / "bin/python"), "-c", "import pylsl; print(pylsl.library_version())"],
                           capture_output=True, text=True, env={"PYLSL_LIB": str(liblsl)})
    assert probe.stdout.strip() == "117", probe.stderr  # the bundle's liblsl 1.17, not the wheel's 1.18


@needs_root
def test_installed_files_are_readable_by_the_service_user_and_secrets_are_not(installed, face_models):
    root, result = installed
    assert result.returncode == 0, result.stdout + result.stderr
    assert face_models.stat().st_mode & 0o777 == 0o700  # what the exporter writes, and why modes are fixed
    face = root / "opt/emotion-edge/models/face"
    assert {path.name for path in face.iterdir()} == {path.name for path in face_models.iterdir()}
    assert all(path.stat().st_mode & 0o777 == 0o644 and path.stat().st_uid == 0 for path in face.iterdir())
    assert face.stat().st_mode & 0o777 == 0o755 and (root / "opt/emotion-edge/models/voice").is_dir()
    etc = root / "etc/emotion-edge"
    assert (etc / "config.toml").stat().st_mode & 0o777 == 0o640
    assert (etc / "env").stat().st_mode & 0o777 == 0o600 and "EMOTION_EDGE_MQTT_PASSWORD" in (etc / "env").read_text()


@needs_root
def test_rerun_repairs_the_venv_keeps_config_and_secrets_and_a_config_error_exits_2(installed, unpacked):
    root, first = installed
    assert first.returncode == 0, first.stdout + first.stderr
    etc, venv = root / "etc/emotion-edge", root / "opt/emotion-edge/venv"
    (etc / "env").write_text("EMOTION_EDGE_MQTT_PASSWORD=mine\n")
    for pip in (venv / "lib").glob("python3*/site-packages/pip"):
        shutil.rmtree(pip)  # a venv left half-made by an interrupted install
    again = install(unpacked, root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert subprocess.run([str(venv / "bin/python"), "-m", "pip", "--version"], capture_output=True).returncode == 0
    assert (etc / "config.toml.new").read_bytes() == (unpacked / "config/config.toml").read_bytes()
    broken = '[face]\nthreads = "two"\n'
    (etc / "config.toml").write_text(broken)
    refused = install(unpacked, root)
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("install.sh: face.threads must be a whole number, not 'two'; fix it and run "
                                      "./install.sh again (the running service was left as it was)")
    assert (etc / "config.toml").read_text() == broken
    assert (etc / "env").read_text() == "EMOTION_EDGE_MQTT_PASSWORD=mine\n"


@needs_root
def test_unit_file_verifies_against_the_installed_tree(installed, unpacked):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    root, result = installed
    assert result.returncode == 0, result.stdout + result.stderr
    # verify --root resolves ExecStart and the targets inside ROOT: give it this machine's stock units.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    unit = root / "etc/systemd/system/emotion-edge.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(unpacked / "systemd/emotion-edge.service", unit)
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root}", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr  # warnings count as failures
    text = unit.read_text()
    for line in ("RestartPreventExitStatus=2", "CacheDirectory=emotion-edge", "StateDirectory=emotion-edge",
                 "Environment=PYLSL_LIB=/opt/emotion-edge/lib/liblsl.so", "EnvironmentFile=-/etc/emotion-edge/env"):
        assert line in text.splitlines()


@needs_root
def test_bundle_for_another_machine_is_refused_with_one_line(unpacked, workdir):
    other = workdir / "other"
    other.mkdir()
    shutil.copy(unpacked / "install.sh", other / "install.sh")
    manifest = json.loads((unpacked / "bundle.json").read_text())
    (other / "bundle.json").write_text(json.dumps(dict(manifest, machine="aarch64")))
    result = install(other, workdir / "untouched")
    assert result.returncode == 2
    assert result.stderr.strip() == ("install.sh: this bundle is for aarch64 / Python 3.11, this machine is x86_64 / "
                                     "Python 3.11: build one with `emotion-export bundle --target x86_64`")
    assert not (workdir / "untouched").exists()


@needs_root
def test_damaged_bundle_is_refused_naming_the_file(unpacked, workdir):
    if not system_python_is_311():
        pytest.skip("the x86_64 bundle is for Python 3.11 and this machine's /usr/bin/python3 is not")
    damaged = workdir / "damaged"
    shutil.copytree(unpacked, damaged)
    with open(damaged / "models/face/emotion.int8.tflite", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0\1\2\3")
    result = install(damaged, workdir / "untouched")
    assert result.returncode == 2
    assert result.stderr.strip() == ("install.sh: the bundle is damaged (models/face/emotion.int8.tflite does not "
                                     "match bundle.json): copy the .tar.gz again and unpack it afresh")
    assert not (workdir / "untouched").exists()


def test_missing_or_broken_face_models_stop_the_build_with_one_line(tmp_path, face_models):
    missing = tmp_path / "nothing"
    result = run_export("bundle", "--target", "pi-aarch64", "--face-models", str(missing), "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"emotion-export: error: face models not found in {missing}: export them "
                                     f"with `emotion-export face --out {missing}`")
    broken = tmp_path / "broken"
    shutil.copytree(face_models, broken)
    (broken / "detector.int8.tflite").write_bytes(b"not a model")
    result = run_export("bundle", "--target", "pi-aarch64", "--face-models", str(broken), "--out", str(tmp_path))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "detector.int8.tflite does not match its manifest" in result.stderr
    assert not list(tmp_path.glob("*.tar.gz")) and not list(tmp_path.glob(".*partial"))


def test_liblsl_wheel_with_another_hash_is_refused(tmp_path):
    target, cache = TARGETS["x86_64"], CACHE / "bundle-wheels"
    path, version = fetch_liblsl(target, cache, tmp_path)  # downloads the pinned wheel when not cached
    assert path.read_bytes()[:4] == b"\x7fELF" and version.startswith("1.17")
    wrong = dataclasses.replace(target, liblsl=dataclasses.replace(target.liblsl, sha256="0" * 64))
    with pytest.raises(ExportError, match=r"not the pinned 0{64}: delete it and build again"):
        fetch_liblsl(wrong, cache, tmp_path)


@pytest.mark.parametrize("target, numpy, onnxruntime, opencv, tomli", [
    ("pi-aarch64", "2.4.6", "1.32.0", True, False),
    ("jetson-aarch64", "1.26.4", "1.23.2", False, True),
    ("x86_64", "2.4.6", "1.32.0", True, False),
])
def test_lock_is_evaluated_for_the_target_python_not_the_workstation(target, numpy, onnxruntime, opencv, tomli):
    pins = {pin.name: pin.version for pin in read_lock(ROOT / "firmware_config/locks/runtime.txt", TARGETS[target])}
    assert pins["numpy"] == numpy and pins["onnxruntime"] == onnxruntime
    assert ("opencv-python-headless" in pins) is opencv and ("tomli" in pins) is tomli
    assert "colorama" not in pins and "pyreadline3" not in pins  # win32 only


def test_eeg_source_logs_the_bundled_liblsl_it_loaded(unpacked):
    liblsl = unpacked / "liblsl/liblsl.so"
    code = ("import logging; logging.basicConfig(level=logging.INFO)\n"
            "from edge.sources.lsl import LSLSource\nLSLSource()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYLSL_LIB=str(liblsl)), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"INFO:edge.sources.lsl:liblsl 117 loaded from {liblsl}" in result.stderr.splitlines()
