"""The contract of a modality's analyzer: synchronous, no threads, no publisher (openWakeWord's `predict`).

The generic worker (`edge.worker`) owns the loop: it reads an item from the modality's source, calls
`process(item)` and puts the returned observations on the bus. Streaming state (filters, tracks,
rolling baselines) lives inside the analyzer; `reset()` drops it when the input restarted (a camera
reopened, an EEG stream re-resolved), and `close()` ends every subject when the input is over.
"""

from __future__ import annotations

from typing import Any, Protocol

from .observation import Observation


class Analyzer(Protocol):
    modality: str

    def process(self, item: Any) -> list[Observation]:
        """Every observation this source item gives (one per subject; "start"/"end" when subjects come and go)."""

    def reset(self) -> None:
        """Forget streaming state: the next item starts a new stream."""

    def close(self) -> list[Observation]:
        """The input ended: "end" observations for the subjects still open; the analyzer may be discarded."""

    def health(self) -> dict[str, Any]:
        """Counters and timings for the health topic (JSON-serialisable)."""

    def models(self) -> dict[str, dict[str, Any]]:
        """Each loaded model's description (backend.describe()), keyed like "face.emotion"."""
