"""Results a user reads without a log file: metrics.json, confusion matrix (PNG + JSON), curves, and one
JSON line per logging step appended to $JOBSUB_METRICS_FILE for `jobsub results` / `logs`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from train_entry.data import LabelSet
from train_entry.distributed import is_main

CJK_FONTS = ("Noto Sans CJK", "Noto Sans SC", "WenQuanYi", "SimHei", "Microsoft YaHei", "PingFang", "Source Han Sans")


def classification_metrics(labels: list[int], predictions: list[int], label_set: LabelSet) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    indices = list(range(len(label_set.ids)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=indices, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(sum(f1) / len(f1)),
        "per_class": {
            label_set.display(i): {
                "label": label_set.ids[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in indices
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=indices).tolist(),
        "labels": [label_set.display(i) for i in indices],
    }


def cjk_font() -> str | None:
    from matplotlib import font_manager

    for font in font_manager.fontManager.ttflist:
        if any(name.lower() in font.name.lower() for name in CJK_FONTS):
            return font.name
    return None


def plot_confusion_matrix(matrix: list[list[int]], label_set: LabelSet, path: Path, title: str) -> Path:
    """Rows are true classes, columns predictions; Chinese class names only where a CJK font exists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = cjk_font()
    if font and label_set.names_zh:
        plt.rcParams["font.sans-serif"] = [font, *plt.rcParams["font.sans-serif"]]
        names = [label_set.names_zh.get(i, label_set.display(n)) for n, i in enumerate(label_set.ids)]
    else:
        names = [label_set.display(n).removeprefix("news_") for n in range(len(label_set.ids))]
    size = max(6.0, 0.55 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    peak = max((max(row) for row in matrix), default=0)
    for r, row in enumerate(matrix):
        for c, value in enumerate(row):
            if value:
                ax.text(
                    c,
                    r,
                    str(value),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > peak / 2 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Training loss per logging step and evaluation accuracy / macro-F1 per evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [
        (h["step"], h.get("eval_accuracy"), h.get("eval_macro_f1"), h.get("eval_loss"))
        for h in history
        if "eval_loss" in h
    ]
    if not train and not evals:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        left.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        left.plot([e[0] for e in evals], [e[3] for e in evals], marker="o", label="eval loss")
        if any(e[1] is not None for e in evals):
            right.plot([e[0] for e in evals], [e[1] for e in evals], marker="o", label="accuracy")
            right.plot([e[0] for e in evals], [e[2] for e in evals], marker="o", label="macro-F1")
    left.set_xlabel("step")
    left.set_title("loss")
    left.legend()
    right.set_xlabel("step")
    right.set_title("evaluation")
    right.legend() if evals else right.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def emit_metrics_line(row: dict[str, Any]) -> None:
    """Print the line (it lands in the job log) and append it to $JOBSUB_METRICS_FILE when jobsub runs us.
    Rank 0 only: with several processes every rank would write the same step again."""
    if not is_main():
        return
    line = json.dumps(row, ensure_ascii=False)
    print(f"metrics {line}", flush=True)
    target = os.environ.get("JOBSUB_METRICS_FILE")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
