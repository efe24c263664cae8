"""Held-out evaluation shared by the training commands: accuracy, per-class recall, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np


def evaluate(probs: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy (recall) and confusion matrix (rows true, columns predicted)."""
    predicted = probs.argmax(1)
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(matrix, (targets, predicted), 1)
    per_class = {label: (round(float(matrix[i, i] / matrix[i].sum()), 4) if matrix[i].sum() else None)
                 for i, label in enumerate(labels)}
    return {"samples": int(len(targets)), "accuracy": round(float(np.mean(predicted == targets)), 4),
            "chance": round(1 / len(labels), 4), "per_class_accuracy": per_class,
            "confusion_matrix": {"labels": labels, "rows": "true", "columns": "predicted",
                                 "counts": matrix.tolist()}}


def format_evaluation(windows: dict[str, Any], groups: dict[str, Any], held_out: str, group_unit: str) -> str:
    """The printed report: accuracy over windows and over whole groups (recordings, trials), then the matrix."""
    labels = windows["confusion_matrix"]["labels"]
    width = max(9, *(len(label) for label in labels)) + 1
    lines = [f"held-out {held_out}: accuracy {windows['accuracy'] * 100:.1f}% over {windows['samples']} windows, "
             f"{groups['accuracy'] * 100:.1f}% over {groups['samples']} {group_unit} "
             f"(chance {windows['chance'] * 100:.1f}%)",
             "confusion matrix (windows; rows true, columns predicted):",
             " " * width + "".join(f"{label:>{width}}" for label in labels) + f"{'acc':>8}"]
    for label, row in zip(labels, windows["confusion_matrix"]["counts"]):
        acc = windows["per_class_accuracy"][label]
        lines.append(f"{label:>{width}}" + "".join(f"{c:>{width}}" for c in row)
                     + (f"{acc * 100:>7.1f}%" if acc is not None else f"{'-':>8}"))
    return "\n".join(lines)
