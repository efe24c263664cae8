"""Checks shared by the tests of the training plots: parse an SVG as XML, read its cells, and render it in a
real headless Chromium (when installed) to prove a browser draws it, not only that it parses."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SVG_NS = "http://www.w3.org/2000/svg"
NS = {"svg": SVG_NS}


def parse_svg(path: Path) -> ET.Element:
    """The root element, after checking it is a sized SVG in the SVG namespace."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{{{SVG_NS}}}svg", root.tag
    assert root.get("version") == "1.1"
    width, height = float(root.get("width")), float(root.get("height"))
    assert width > 0 and height > 0
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    return root


def by_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{{{SVG_NS}}}{tag}") if e.get("class") == cls]


def matrix_counts(root: ET.Element) -> list[list[int]]:
    """The count texts of a confusion matrix, row by row."""
    counts = [int(e.text) for e in by_class(root, "text", "count")]
    n = round(len(counts) ** 0.5)
    assert n * n == len(counts) == len(by_class(root, "rect", "cell"))
    return [counts[i * n:(i + 1) * n] for i in range(n)]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(svg: Path, png: Path):
    """A real headless Chromium screenshot of the file, as an RGB PIL image."""
    from PIL import Image

    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    result = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             f"--screenshot={png}", "--window-size=800,600", svg.resolve().as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and png.is_file(), result.stderr[-2000:]
    return Image.open(png).convert("RGB")


def has_colour(image, rgb: tuple[int, int, int], tolerance: int = 12, at_least: int = 30) -> bool:
    """Whether at least `at_least` pixels are within `tolerance` of `rgb`: the drawing, not an error page."""
    r0, g0, b0 = rgb
    raw = image.tobytes()
    hits = sum(1 for k in range(0, len(raw), 3)
               if abs(raw[k] - r0) <= tolerance and abs(raw[k + 1] - g0) <= tolerance
               and abs(raw[k + 2] - b0) <= tolerance)
    return hits >= at_least


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[k:k + 2], 16) for k in (1, 3, 5))


def assert_renders(svg: Path, png: Path, colours: list[str]) -> None:
    """The browser's picture is not blank and shows each of `colours` (cell shades, line colours)."""
    image = render(svg, png)
    assert image.getextrema() != ((255, 255), (255, 255), (255, 255)), "blank screenshot"
    for colour in colours:
        assert has_colour(image, hex_rgb(colour)), f"{colour} not drawn in {png}"
