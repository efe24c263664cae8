"""Model manifests: the JSON contract between the export pipeline and the device.

Every artifact `X` (for example `emotion_int8.tflite`) sits beside `X.json`, which says what
the model is (task, labels), how to feed it (input name, shape, layout, dtype, preprocessing,
quantization), what comes out, where it came from, and its sha256. The device checks that hash
before it runs anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EdgeError

SCHEMA = "emotion-edge/manifest/1"
REQUIRED_KEYS = (
    "schema", "model_id", "task", "modality", "format", "precision", "artifact", "labels",
    "inputs", "outputs", "preprocessing", "quantization", "source",
)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


@dataclass
class TensorSpec:
    name: str
    shape: list[int]
    dtype: str
    layout: str = ""
    meaning: str = ""
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TensorSpec":
        quant = data.get("quantization") or {}
        return cls(
            name=data["name"], shape=list(data["shape"]), dtype=data["dtype"],
            layout=data.get("layout", ""), meaning=data.get("meaning", ""),
            scale=quant.get("scale"), zero_point=quant.get("zero_point"),
        )


@dataclass
class Manifest:
    path: Path
    data: dict[str, Any]
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)

    @property
    def artifact_path(self) -> Path:
        return self.path.parent / self.data["artifact"]["file"]

    @property
    def sha256(self) -> str:
        return self.data["artifact"]["sha256"]

    @property
    def labels(self) -> list[str]:
        return list(self.data["labels"])

    @property
    def model_id(self) -> str:
        return self.data["model_id"]

    @property
    def format(self) -> str:
        return self.data["format"]

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.data["preprocessing"]

    def verify(self) -> None:
        """Refuse an artifact whose bytes are not the ones the manifest describes."""
        artifact = self.artifact_path
        if not artifact.is_file():
            raise EdgeError(f"model file {artifact} named by {self.path} is missing; re-run emotion-export")
        actual = sha256_file(artifact)
        if actual != self.sha256:
            raise EdgeError(
                f"model file {artifact} does not match its manifest (sha256 {actual[:12]}... != "
                f"{self.sha256[:12]}...): it is corrupt or was replaced; re-run emotion-export"
            )


def load_manifest(path: str | Path, verify: bool = True) -> Manifest:
    """Load a manifest given either the manifest itself or the artifact it describes."""
    path = Path(path)
    if path.suffix != ".json":
        path = manifest_path(path)
    if not path.is_file():
        raise EdgeError(f"model manifest {path} not found; point at an artifact produced by emotion-export")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgeError(f"model manifest {path} is not valid JSON ({exc}); re-run emotion-export") from None
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise EdgeError(f"model manifest {path} lacks {', '.join(missing)}; re-run emotion-export")
    if data["schema"] != SCHEMA:
        raise EdgeError(f"model manifest {path} has schema {data['schema']!r}, this runtime reads {SCHEMA!r}")
    manifest = Manifest(
        path=path, data=data,
        inputs=[TensorSpec.from_dict(item) for item in data["inputs"]],
        outputs=[TensorSpec.from_dict(item) for item in data["outputs"]],
    )
    if verify:
        manifest.verify()
    return manifest


def check_input_shape(manifest: Manifest, actual: tuple | list) -> None:
    """Refuse a model whose real input is not the one the manifest promises: preprocessing builds inputs from
    the manifest, so a mismatch would otherwise surface as a shape error on the first frame, or as garbage.
    A dimension the model or manifest leaves open (None or -1, e.g. a dynamic batch) matches any size."""
    declared = list(manifest.inputs[0].shape)
    found = [-1 if size is None else int(size) for size in actual]
    compatible = len(declared) == len(found) and all(
        a == b or a in (None, -1) or b == -1 for a, b in zip(declared, found))
    if not compatible:
        raise EdgeError(f"model {manifest.artifact_path} takes input shape {tuple(found)} but its manifest "
                        f"{manifest.path.name} says {tuple(declared)}; re-export with emotion-export")
