"""Input sources (camera, microphone, LSL) behind one small newest-item interface.

Implementations live one per module and are imported from there (`edge.sources.camera`), so a
device that only uses the microphone never needs OpenCV installed.
"""

from .base import ENDED, RECONNECTING, RUNNING, STARTING, STOPPED, NewestSlot, Source

__all__ = ["Source", "NewestSlot", "STARTING", "RUNNING", "RECONNECTING", "ENDED", "STOPPED"]
