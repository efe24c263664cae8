"""The training-report pictures (`edge.reportplots`): valid SVG 1.1 that says what the numbers say, and that a
real browser draws."""

from __future__ import annotations

import os

import pytest

from edge.reportplots import (SERIES_COLOURS, confusion_matrix_svg, learning_curve_svg, write_svg,
                              write_training_plots)
from tests.svg_check import assert_renders, by_class, matrix_counts, parse_svg

MATRIX = [[40, 8, 2], [5, 30, 15], [0, 0, 0]]
LABELS = ["calm", "happy", "fear & <anger>"]


def test_confusion_matrix_counts_shares_and_shading(tmp_path):
    path = write_svg(tmp_path / "confusion.svg", confusion_matrix_svg(MATRIX, LABELS, "held-out <test>"))
    root = parse_svg(path)
    assert matrix_counts(root) == MATRIX
    shares = [e.text for e in by_class(root, "text", "share")]
    assert shares == ["80%", "16%", "4%", "10%", "60%", "30%", "-", "-", "-"]
    axis = {e.text for e in by_class(root, "text", "axis-label")}
    assert axis == {"true", "predicted"}
    assert [e.text for e in by_class(root, "text", "row-label")] == LABELS  # escaped in the file, intact when parsed
    fills = [e.get("fill") for e in by_class(root, "rect", "cell")]
    # row-normalised: the 80% cell is darker than the 60% one, darker than 30%; the empty row is grey, not white
    darkness = [sum(int(f[k:k + 2], 16) for k in (1, 3, 5)) for f in fills]
    assert darkness[0] < darkness[4] < darkness[5] < darkness[2]
    assert fills[6:] == ["#eeeeee"] * 3
    assert root.get("font-family") == "sans-serif"


def test_learning_curve_lines_ticks_legend(tmp_path):
    series = {"train": [(1, 0.4), (2, 0.6), (3, 0.8), (4, 0.9)],
              "held-out": [(1, 0.35), (2, None), (3, 0.6), (4, 0.65)],
              "empty": [(1, None)]}
    path = write_svg(tmp_path / "curve.svg", learning_curve_svg(series, "epoch", "accuracy", "curve", y_range=(0, 1)))
    root = parse_svg(path)
    lines = by_class(root, "polyline", "series")
    assert [len(line.get("points").split()) for line in lines] == [4, 3]  # the None point is left out
    assert [line.get("stroke") for line in lines] == list(SERIES_COLOURS[:2])
    legend = [e.text for e in by_class(root, "text", "legend-label")]
    assert legend == ["train", "held-out", "empty (no data)"]
    y_ticks = [float(e.text) for e in by_class(root, "text", "tick-label")][-len(by_class(root, "line", "y-tick")):]
    assert y_ticks[0] == 0 and y_ticks[-1] == 1
    assert len(by_class(root, "line", "x-tick")) >= 4
    # higher accuracy is drawn higher up: the train line's y coordinate falls as accuracy rises
    ys = [float(p.split(",")[1]) for p in lines[0].get("points").split()]
    assert ys == sorted(ys, reverse=True)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="3x3"):
        confusion_matrix_svg([[1, 2], [3, 4]], LABELS, "t")
    with pytest.raises(ValueError, match="non-negative integers"):
        confusion_matrix_svg([[1, -1], [0, 2]], ["a", "b"], "t")
    with pytest.raises(ValueError, match="no finite points"):
        learning_curve_svg({"a": [(1, None)]}, "x", "y", "t")


def test_write_is_atomic_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "plot.svg"
    target.write_text("old")
    write_svg(target, "<svg/>")
    assert target.read_text() == "<svg/>" and os.listdir(tmp_path) == ["plot.svg"]


def test_training_plots_render_in_a_real_browser(tmp_path):
    paths = write_training_plots(tmp_path, {"labels": ["calm", "happy"], "counts": [[9, 1], [3, 7]]},
                                 {"train": [(1, 0.5), (2, 0.7), (3, 0.9)], "held-out": [(1, 0.5), (2, 0.6), (3, 0.8)]},
                                 "unit")
    assert sorted(p.name for p in paths.values()) == ["confusion.svg", "learning_curve.svg"]
    fills = [e.get("fill") for e in by_class(parse_svg(paths["confusion"]), "rect", "cell")]
    assert_renders(paths["confusion"], tmp_path / "confusion.png", [fills[0], fills[3]])
    assert_renders(paths["learning_curve"], tmp_path / "curve.png", list(SERIES_COLOURS[:2]))
