"""PNG figures for the report: ROC/PR curves, confusion matrices, training curves, a study's seed spread.

Split names are long (``test_04_unknown_vehicle_unknown_attack``) and there can be six test
splits, so each split is one row (a subfigure) titled once with its name, the panels carry only
short titles (ROC, precision-recall, the model), and constrained layout spaces titles, axis
labels and tick labels so none overlap. ``*_figure`` build the figures (tests inspect them),
``plot_*`` write them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure, SubFigure  # noqa: E402

from canids.stages.evaluation import MODELS, SplitPredictions  # noqa: E402
from canids.stages.metrics import pr_curve, roc_curve  # noqa: E402
from canids.util import atomic_save  # noqa: E402

# ROC x axis: linear below one false alarm in 10,000 normal windows, logarithmic above, so the
# low false-positive rates that matter for an IDS are not squeezed against the y axis.
FPR_LINTHRESH = 1e-4


def _save(fig: Figure, path: Path) -> None:
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def _rows(fig: Figure, n: int) -> list[SubFigure]:
    """One subfigure per split, stacked."""
    return list(fig.subfigures(n, 1, squeeze=False)[:, 0])


def curves_figure(preds: dict[str, SplitPredictions]) -> Figure:
    """One row per split with both classes: ROC (left) and precision-recall (right) for vgae, gat and fusion."""
    splits = [s for s, p in preds.items() if 0 < p.y.sum() < len(p.y)]
    fig = plt.figure(figsize=(10, 0.4 + 3.8 * max(len(splits), 1)), layout="constrained")
    if not splits:
        return _say(fig, "no split with both classes")
    for row, split in zip(_rows(fig, len(splits)), splits):
        p = preds[split]
        row.suptitle(split, fontweight="bold")
        ax_roc, ax_pr = row.subplots(1, 2)
        for model in MODELS:
            fpr, tpr, _ = roc_curve(p.y, p.scores[model])
            prec, rec, _ = pr_curve(p.y, p.scores[model])
            ax_roc.plot(fpr, tpr, label=model)
            ax_pr.step(rec, prec, where="post", label=model)
        ax_roc.set_xscale("symlog", linthresh=FPR_LINTHRESH)
        ax_roc.set(title="ROC", xlabel="false positive rate (symlog)", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
        ax_pr.set(title="precision-recall", xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
        for ax in (ax_roc, ax_pr):
            ax.grid(alpha=0.3)
        ax_roc.legend(loc="lower right", fontsize=8)
        ax_pr.legend(loc="lower left", fontsize=8)
    return fig


def _say(fig: Figure, text: str) -> Figure:
    """A figure that only says why it has nothing to show."""
    ax = fig.subplots()
    ax.text(0.5, 0.5, text, ha="center")
    ax.set_axis_off()
    return fig


def plot_curves(preds: dict[str, SplitPredictions], path: Path) -> None:
    _save(curves_figure(preds), path)


def confusion_figure(preds: dict[str, SplitPredictions]) -> Figure:
    """One row per split, one matrix per model (rows: true class, columns: decision)."""
    splits = list(preds)
    fig = plt.figure(figsize=(3.2 * len(MODELS), 0.3 + 3.0 * max(len(splits), 1)), layout="constrained")
    if not splits:
        return _say(fig, "no split")
    for row, split in zip(_rows(fig, len(splits)), splits):
        p = preds[split]
        row.suptitle(split, fontweight="bold")
        for col, (ax, model) in enumerate(zip(row.subplots(1, len(MODELS)), MODELS)):
            d = p.decisions[model].astype(bool)
            y = p.y.astype(bool)
            mat = np.array([[(~y & ~d).sum(), (~y & d).sum()], [(y & ~d).sum(), (y & d).sum()]])
            ax.imshow(mat, cmap="Blues", vmin=0)
            for (i, j), v in np.ndenumerate(mat):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > mat.max() / 2 else "black")
            ax.set(title=model, xticks=[0, 1], yticks=[0, 1], xticklabels=["normal", "attack"], yticklabels=["normal", "attack"], xlabel="predicted")
            if col == 0:
                ax.set_ylabel("true")
    return fig


def plot_confusion(preds: dict[str, SplitPredictions], path: Path) -> None:
    _save(confusion_figure(preds), path)


def training_figure(csv_files: dict[str, Path]) -> Figure:
    """Loss and validation curves of each training stage, from Lightning's CSV logs."""
    fig = plt.figure(figsize=(5 * max(len(csv_files), 1), 3.6), layout="constrained")
    axes = fig.subplots(1, max(len(csv_files), 1), squeeze=False)[0]
    for ax, (stage, csv_path) in zip(axes, csv_files.items()):
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
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no training log", ha="center", transform=ax.transAxes)
    return fig


def plot_training_curves(csv_files: dict[str, Path], path: Path) -> None:
    """Loss and validation curves of each training stage, from Lightning's CSV logs."""
    _save(training_figure(csv_files), path)


def seed_spread_figure(panels: dict[str, list[tuple[str, list[float], tuple[float, float]]]], metric: str) -> Figure:
    """One row per panel (dataset / split): each variant or sweep point's per-seed scores as
    dots, with its mean and 95 % interval as a bar, so a reader sees the spread the table summarises."""
    fig = plt.figure(figsize=(9, 2.4 * max(len(panels), 1)), layout="constrained")
    if not panels:
        return _say(fig, "no finished study point")
    for sub, (title, entries) in zip(_rows(fig, len(panels)), panels.items()):
        ax = sub.subplots()
        sub.suptitle(title, fontsize=10)
        for i, (label, values, (low, high)) in enumerate(entries):
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(i + jitter, values, s=18, alpha=0.8, zorder=3)
            if values:
                mean = float(np.mean(values))
                ax.hlines(mean, i - 0.25, i + 0.25, color="black", zorder=4)
                if np.isfinite(low) and np.isfinite(high):
                    ax.vlines(i + 0.3, low, high, color="grey", linewidth=3, alpha=0.6)
        ax.set_xticks(range(len(entries)), [label for label, _, _ in entries], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=0.3)
    return fig


def plot_seed_spread(panels: dict[str, list[tuple[str, list[float], tuple[float, float]]]], metric: str, path: Path) -> None:
    _save(seed_spread_figure(panels, metric), path)
