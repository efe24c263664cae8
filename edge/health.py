"""Device vitals for the health topic: a throttling Pi or Jetson explains a falling frame rate."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

THERMAL_ROOT = Path("/sys/class/thermal")
# Zone types that measure the CPU/SoC on Raspberry Pi (cpu-thermal), Jetson (CPU-therm, cpu-thermal)
# and x86 (x86_pkg_temp); the first match wins, otherwise the first readable zone.
_CPU_ZONE_HINTS = ("cpu", "soc", "x86_pkg")


def _read_zone(zone: Path) -> float | None:
    try:
        millidegrees = int((zone / "temp").read_text().strip())
    except (OSError, ValueError):
        return None
    return round(millidegrees / 1000.0, 1)


def cpu_temperature_c(thermal_root: Path = THERMAL_ROOT) -> float | None:
    """CPU temperature in degrees Celsius, or None where the kernel exposes no thermal zone."""
    try:
        zones = sorted(thermal_root.glob("thermal_zone*"), key=lambda p: (len(p.name), p.name))
    except OSError:
        return None
    fallback = None
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip().lower()
        except OSError:
            kind = ""
        value = _read_zone(zone)
        if value is None:
            continue
        if any(hint in kind for hint in _CPU_ZONE_HINTS):
            return value
        if fallback is None:
            fallback = value
    return fallback
