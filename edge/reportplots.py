"""Training reports as pictures: a confusion matrix and a learning curve as standalone SVG 1.1.

Stdlib only, because `emotion-edge calibrate` draws these on the device, where there is no
matplotlib. The SVG is plain text any browser or image viewer opens; fonts are the generic
`sans-serif` so nothing has to be installed to render it.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape

FONT = "sans-serif"
# Cell shade: white at 0% of the row, this blue at 100%.
SHADE_RGB = (31, 90, 170)
EMPTY_ROW = "#eeeeee"
# Line colours for learning-curve series, in order (colour-blind friendly Okabe-Ito subset).
SERIES_COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
CHAR_W = 7.0  # rough width of one 12 px sans-serif character, for layout only


def _svg(width: float, height: float, body: list[str]) -> str:
    w, h = round(width), round(height)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" font-family="{FONT}" font-size="12">\n'
            f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>\n' + "\n".join(body) + "\n</svg>\n")


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 12, extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"{extra}>'
            f'{escape(str(text))}</text>')


def _shade(fraction: float) -> str:
    r, g, b = (round(255 + (c - 255) * fraction) for c in SHADE_RGB)
    return f"#{r:02x}{g:02x}{b:02x}"


def confusion_matrix_svg(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> str:
    """Rows are the true class, columns the predicted one; each cell shows its count and its share of the row.

    Shading is by that row share, so a rare class's errors are as visible as a common one's. A row with
    no samples has no share: it is grey and shows "-" instead of a percentage.
    """
    n = len(labels)
    rows = [list(row) for row in matrix]
    if n == 0 or len(rows) != n or any(len(row) != n for row in rows):
        raise ValueError(f"confusion matrix must be {n}x{n} to match {n} labels")
    if any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for row in rows for c in row):
        raise ValueError("confusion matrix counts must be non-negative integers")
    cell = 72
    label_w = max(CHAR_W * max(len(str(label)) for label in labels) + 12, 40)
    left, top = 30 + label_w, 60 + label_w * 0.7
    width = left + n * cell + 30
    height = top + n * cell + 50
    body = [_text(width / 2, 24, title, size=15, extra=' font-weight="bold"'),
            _text(left + n * cell / 2, 46, "predicted", size=13, extra=' class="axis-label"'),
            _text(14, top + n * cell / 2, "true", size=13,
                  extra=f' class="axis-label" transform="rotate(-90 14 {top + n * cell / 2:.1f})"')]
    for j, label in enumerate(labels):
        x, y = left + (j + 0.5) * cell, top - 8
        body.append(_text(x, y, label, anchor="start",
                          extra=f' class="col-label" transform="rotate(-35 {x:.1f} {y:.1f})"'))
    for i, (label, row) in enumerate(zip(labels, rows)):
        total = sum(row)
        y = top + i * cell
        body.append(_text(left - 8, y + cell / 2 + 4, label, anchor="end", extra=' class="row-label"'))
        for j, count in enumerate(row):
            x = left + j * cell
            share = count / total if total else None
            fill = EMPTY_ROW if share is None else _shade(share)
            ink = "#ffffff" if share is not None and share > 0.55 else "#000000"
            body.append(f'<rect class="cell" x="{x}" y="{y:.1f}" width="{cell}" height="{cell}" fill="{fill}" '
                        f'stroke="#888888" stroke-width="1"/>')
            body.append(_text(x + cell / 2, y + cell / 2 - 2, count, size=15,
                              extra=f' class="count" fill="{ink}" font-weight="bold"'))
            body.append(_text(x + cell / 2, y + cell / 2 + 16, "-" if share is None else f"{share * 100:.0f}%",
                              size=11, extra=f' class="share" fill="{ink}"'))
    body.append(_text(left + n * cell / 2, height - 16, "counts; % of the true class (row)", size=11,
                      extra=' fill="#555555"'))
    return _svg(width, height, body)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _label(value: float) -> str:
    return f"{value:.10g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def learning_curve_svg(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str, title: str,
                       y_range: tuple[float, float] | None = None) -> str:
    """One polyline per series over shared axes with ticks, and a legend.

    Points whose y is None or not finite ("no data") are left out of the line. `y_range` fixes the
    y axis (for example (0, 1) for accuracy) instead of fitting it to the data.
    """
    if not series:
        raise ValueError("learning curve needs at least one series")
    clean = {name: [(float(x), float(y)) for x, y in points
                    if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
             for name, points in series.items()}
    xs = [x for points in clean.values() for x, _ in points]
    ys = [y for points in clean.values() for _, y in points]
    if not xs:
        raise ValueError("learning curve has no finite points in any series")
    x_ticks = _ticks(min(xs), max(xs))
    y_ticks = _ticks(*(y_range or (min(ys), max(ys))))
    if y_range:
        y_ticks = [t for t in y_ticks if y_range[0] - 1e-9 <= t <= y_range[1] + 1e-9]
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    left, top, plot_w, plot_h = 70, 44, 520, 300
    legend_w = max(CHAR_W * max(len(name) for name in clean) + 40, 100)
    width, height = left + plot_w + 20 + legend_w, top + plot_h + 60

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0 or 1) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0 or 1) * plot_h

    body = [_text(width / 2, 24, title, size=15, extra=' font-weight="bold"'),
            f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444444"/>']
    for t in x_ticks:
        body.append(f'<line class="x-tick" x1="{px(t):.1f}" y1="{top + plot_h}" x2="{px(t):.1f}" '
                    f'y2="{top + plot_h + 5}" stroke="#444444"/>')
        body.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{top + plot_h}" stroke="#e4e4e4"/>')
        body.append(_text(px(t), top + plot_h + 19, _label(t), extra=' class="tick-label"'))
    for t in y_ticks:
        body.append(f'<line class="y-tick" x1="{left - 5}" y1="{py(t):.1f}" x2="{left}" y2="{py(t):.1f}" '
                    f'stroke="#444444"/>')
        body.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + plot_w}" y2="{py(t):.1f}" stroke="#e4e4e4"/>')
        body.append(_text(left - 8, py(t) + 4, _label(t), anchor="end", extra=' class="tick-label"'))
    body.append(_text(left + plot_w / 2, height - 14, x_label, size=13, extra=' class="axis-label"'))
    body.append(_text(18, top + plot_h / 2, y_label, size=13,
                      extra=f' class="axis-label" transform="rotate(-90 18 {top + plot_h / 2:.1f})"'))
    legend_x = left + plot_w + 20
    for k, (name, points) in enumerate(clean.items()):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        if points:
            body.append(f'<polyline class="series" points="{coords}" fill="none" stroke="{colour}" '
                        f'stroke-width="2" stroke-linejoin="round"/>')
            if len(points) <= 60:
                body += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in points]
        ly = top + 10 + k * 20
        body.append(f'<line class="legend-swatch" x1="{legend_x}" y1="{ly}" x2="{legend_x + 22}" y2="{ly}" '
                    f'stroke="{colour}" stroke-width="3"/>')
        body.append(_text(legend_x + 28, ly + 4, name if points else f"{name} (no data)", anchor="start",
                          extra=' class="legend-label"'))
    return _svg(width, height, body)


def write_svg(path: str | os.PathLike, svg: str) -> Path:
    """Write through a temporary file in the same directory and rename, so a reader never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(svg)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_training_plots(directory: str | os.PathLike, confusion: dict, curves: dict[str, list[tuple[float, float]]],
                         title: str, x_label: str = "epoch", y_label: str = "accuracy") -> dict[str, Path]:
    """`confusion.svg` and `learning_curve.svg` in `directory`, from an evaluation's confusion matrix
    (`{"labels": [...], "counts": [[...]]}`, rows true) and accuracy curves in [0, 1]."""
    directory = Path(directory)
    samples = sum(map(sum, confusion["counts"]))
    return {
        "confusion": write_svg(directory / "confusion.svg", confusion_matrix_svg(
            confusion["counts"], confusion["labels"], f"{title}: held-out confusion ({samples} windows)")),
        "learning_curve": write_svg(directory / "learning_curve.svg", learning_curve_svg(
            curves, x_label, y_label, f"{title}: learning curve", y_range=(0.0, 1.0))),
    }
