"""TOML configuration: one `[section]` per component, each mapped onto that component's dataclass.

Every option has a default (the dataclass field) and a comment (beside the field), so
`emotion-edge defaults` prints a complete, documented file. Unknown sections or keys and values
of the wrong type are errors naming `section.key`; value ranges are checked by each dataclass.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends.base import cache_directory
from .eeg.config import EEGConfig
from .errors import EdgeError
from .events import MODALITIES
from .face.config import FaceConfig
from .face.tracker import TrackerConfig
from .fusion import FusionConfig
from .publish.settings import MqttConfig
from .smoothing import SmoothingConfig
from .sources.audio import AudioFileConfig, MicrophoneConfig
from .sources.camera_config import CameraConfig
from .sinks.dashboard import DashboardConfig
from .sinks.lsl_outlet import LslOutletConfig
from .sources.lsl import LSLSourceConfig
from .voice.config import VoiceConfig
from .voice.vad import VadConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 on Jetson JetPack 6
    import tomli as tomllib


# Levels a device publishes below its own id: a device with one of these as its id could, under a nested
# topic prefix, publish exactly another device's topics.
RESERVED_TOPIC_LEVELS = (*MODALITIES, "availability", "health")


@dataclass
class DeviceConfig:
    id: str = "emotion-edge"  # device id used in MQTT topics, events and Home Assistant
    data_dir: str = "~/.local/share/emotion-edge"  # spool and runtime state (never frames or audio)
    # compiled TensorRT engines (tensorrt backend, ONNX Runtime's TensorRT provider), built on first load;
    # "" = $CACHE_DIRECTORY (systemd's CacheDirectory=emotion-edge) else ~/.cache/emotion-edge
    cache_dir: str = ""
    health_interval_s: float = 10.0  # how often the health topic is published
    log_level: str = "INFO"  # DEBUG, INFO, WARNING or ERROR

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.id):
            raise EdgeError(f"device.id must be 1-64 letters, digits, '-' or '_' (it is part of MQTT topics), "
                            f"not {self.id!r}")
        if self.id in RESERVED_TOPIC_LEVELS:
            raise EdgeError(f"device.id {self.id!r} is a topic level every device publishes under its own id "
                            f"(<prefix>/<id>/{self.id}/...); choose another id")
        if self.health_interval_s <= 0:
            raise EdgeError(f"device.health_interval_s must be > 0, not {self.health_interval_s!r}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise EdgeError(f"device.log_level must be DEBUG, INFO, WARNING or ERROR, not {self.log_level!r}")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def cache_path(self) -> Path:
        return cache_directory(self.cache_dir)


SECTIONS: dict[str, type] = {
    "device": DeviceConfig,
    "camera": CameraConfig,
    "face": FaceConfig,
    "tracker": TrackerConfig,
    "smoothing": SmoothingConfig,
    "mqtt": MqttConfig,
    "voice": VoiceConfig,
    "vad": VadConfig,
    "microphone": MicrophoneConfig,
    "audio_file": AudioFileConfig,
    "eeg": EEGConfig,
    "lsl": LSLSourceConfig,
    "fusion": FusionConfig,
    "lsl_outlet": LslOutletConfig,
    "dashboard": DashboardConfig,
}

# Sections whose values only matter when another setting uses them (an audio file path is
# required only when voice reads from a file); they are validated only then.
IN_USE = {
    "audio_file": lambda sections: sections["voice"].enabled and sections["voice"].source == "file",
    "microphone": lambda sections: sections["voice"].enabled and sections["voice"].source == "microphone",
}


@dataclass
class AppConfig:
    sections: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["sections"][name]
        except KeyError:
            raise AttributeError(name) from None


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    where = f"{section}.{key}"
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise EdgeError(f"{where} must be a list of strings, e.g. [\"AF7\", \"AF8\"], not {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise EdgeError(f"{where} must be true or false, not {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise EdgeError(f"{where} must be a whole number, not {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EdgeError(f"{where} must be a number, not {value!r}")
        value = float(value)
        if not math.isfinite(value):  # TOML accepts nan and inf; no setting means either
            raise EdgeError(f"{where} must be a finite number, not {value!r}")
    elif isinstance(default, str):
        if isinstance(value, int) and not isinstance(value, bool) and key == "source":
            value = str(value)  # camera.source = 0 means device index 0
        if not isinstance(value, str):
            raise EdgeError(f"{where} must be a string, not {value!r}")
    return value


def build_config(data: dict[str, Any], origin: str = "config") -> AppConfig:
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise EdgeError(f"{origin}: unknown section [{unknown[0]}]; known sections: {', '.join(SECTIONS)}")
    sections = {}
    for name, cls in SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise EdgeError(f"{origin}: {name} must be a [{name}] table")
        defaults = cls()
        known = {f.name: f for f in dataclasses.fields(cls) if f.init}
        for key in table:
            if key not in known:
                raise EdgeError(f"{origin}: unknown key {name}.{key}; known keys in [{name}]: {', '.join(known)}")
        values = {key: _coerce(name, key, value, getattr(defaults, key)) for key, value in table.items()}
        sections[name] = cls(**values)
    for name, instance in sections.items():
        if name not in IN_USE or IN_USE[name](sections):
            instance.validate()
    return AppConfig(sections)


def load_config(path: str | Path | None) -> AppConfig:
    if path is None:
        return build_config({})
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EdgeError(f"cannot read config file {path}: {exc.strerror}; check the path and that this user "
                        "may read it") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise EdgeError(f"config file {path} is not UTF-8 text (byte offset {exc.start}, line {line}, is "
                        f"{raw[exc.start]:#04x}); save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EdgeError(f"config file {path} is not valid TOML: {exc}") from None
    return build_config(data, str(path))


def field_comments(cls: type) -> dict[str, str]:
    """The comment beside each field in the dataclass source: the option's documentation."""
    comments, pending, previous_field = {}, [], ""
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("# "))
            continue
        match = re.match(r"(\w+)\s*:\s*[^=]+=\s*.*?(?:#\s*(.*))?$", stripped)
        if match and not match.group(2) and not pending and comments.get(previous_field):
            pending = [comments[previous_field]]  # one comment for a pair such as left/right_frontal
        if match and not stripped.startswith(("def ", "return", "if ", "raise")):
            comments[match.group(1)] = " ".join(pending + ([match.group(2)] if match.group(2) else []))
            previous_field = match.group(1)
        pending = []
    return comments


def _toml_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def defaults_toml() -> str:
    """Every option with its default and documentation, as a valid config file."""
    lines = ["# emotion-edge configuration: every option with its default.", ""]
    for name, cls in SECTIONS.items():
        lines.append(f"[{name}]")
        comments = field_comments(cls)
        for item in dataclasses.fields(cls):
            if not item.init:
                continue
            if comments.get(item.name):
                lines.append(f"# {comments[item.name]}")
            lines.append(f"{item.name} = {_toml_value(getattr(cls(), item.name))}")
        lines.append("")
    return "\n".join(lines)
