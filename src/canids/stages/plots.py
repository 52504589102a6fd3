"""PNG figures for the evaluation report: ROC/PR curves, confusion matrices, training curves."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from canids.stages.evaluation import SplitPredictions  # noqa: E402
from canids.stages.metrics import pr_curve, roc_curve  # noqa: E402
from canids.util import atomic_save  # noqa: E402

MODELS = ("vgae", "gat", "fusion")


def _save(fig, path: Path) -> None:
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def plot_curves(preds: dict[str, SplitPredictions], path: Path) -> None:
    """One row per split: ROC (left) and precision-recall (right) for vgae, gat and fusion."""
    splits = [s for s, p in preds.items() if 0 < p.y.sum() < len(p.y)]
    fig, axes = plt.subplots(max(len(splits), 1), 2, figsize=(10, 3.6 * max(len(splits), 1)), squeeze=False)
    for row, split in enumerate(splits):
        p = preds[split]
        for model in MODELS:
            fpr, tpr, _ = roc_curve(p.y, p.scores[model])
            prec, rec, _ = pr_curve(p.y, p.scores[model])
            axes[row, 0].plot(fpr, tpr, label=model)
            axes[row, 1].step(rec, prec, where="post", label=model)
        axes[row, 0].set(title=f"{split}: ROC", xlabel="false positive rate", ylabel="true positive rate", xscale="symlog", xlim=(0, 1))
        axes[row, 1].set(title=f"{split}: precision-recall", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
        axes[row, 0].legend(loc="lower right")
        axes[row, 1].legend(loc="lower left")
    if not splits:
        axes[0, 0].text(0.5, 0.5, "no split with both classes", ha="center")
    _save(fig, path)


def plot_confusion(preds: dict[str, SplitPredictions], path: Path) -> None:
    splits = list(preds)
    fig, axes = plt.subplots(max(len(splits), 1), len(MODELS), figsize=(3.2 * len(MODELS), 2.8 * max(len(splits), 1)), squeeze=False)
    for row, split in enumerate(splits):
        p = preds[split]
        for col, model in enumerate(MODELS):
            d = p.decisions[model].astype(bool)
            y = p.y.astype(bool)
            mat = np.array([[(~y & ~d).sum(), (~y & d).sum()], [(y & ~d).sum(), (y & d).sum()]])
            ax = axes[row, col]
            ax.imshow(mat, cmap="Blues")
            for (i, j), v in np.ndenumerate(mat):
                ax.text(j, i, str(v), ha="center", va="center")
            ax.set(title=f"{split}\n{model}", xticks=[0, 1], yticks=[0, 1], xticklabels=["normal", "attack"], yticklabels=["normal", "attack"], xlabel="predicted", ylabel="true")
    _save(fig, path)


def plot_training_curves(csv_files: dict[str, Path], path: Path) -> None:
    """Loss and validation curves of each training stage, from Lightning's CSV logs."""
    fig, axes = plt.subplots(1, max(len(csv_files), 1), figsize=(5 * max(len(csv_files), 1), 3.5), squeeze=False)
    for col, (stage, csv_path) in enumerate(csv_files.items()):
        ax = axes[0, col]
        series: dict[str, list[tuple[float, float]]] = {}
        if csv_path.exists():
            with open(csv_path) as handle:
                for row in csv.DictReader(handle):
                    x = float(row.get("epoch") or row.get("step") or 0)
                    for key, value in row.items():
                        if key in ("epoch", "step") or not value:
                            continue
                        series.setdefault(key, []).append((x, float(value)))
        for key, points in sorted(series.items()):
            if key.startswith(("train_loss", "val_", "loss")) and not key.endswith("_step"):
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker=".", label=key)
        ax.set(title=stage, xlabel="epoch / step")
        ax.legend(fontsize=7)
    _save(fig, path)
