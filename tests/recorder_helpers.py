"""Waiting on the EEG recorder's files, which it rewrites at every flush."""

from __future__ import annotations

import json
import time
from pathlib import Path


def wait_meta(path: Path, predicate, timeout: float = 20.0) -> dict:
    """The recorder's JSON once predicate(meta) holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            meta = json.loads(path.read_text())
            if predicate(meta):
                return meta
        except (OSError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.05)
    raise AssertionError("recorder metadata never reached the expected state")
