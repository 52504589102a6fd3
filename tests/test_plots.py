"""Evaluation figures render for 1 and 6 test splits with long names, and no two texts overlap."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from canids.shape import TEST_SPLITS
from canids.stages.evaluation import SplitPredictions
from canids.stages.plots import confusion_figure, curves_figure, plot_confusion, plot_curves, plot_training_curves, training_figure

SPLITS = list(TEST_SPLITS)


def predictions(names: list[str], n: int = 3000) -> dict[str, SplitPredictions]:
    rng = np.random.default_rng(0)
    out = {}
    for k, name in enumerate(names):
        y = (rng.random(n) < 0.05 + 0.05 * k).astype(np.int64)
        vgae = 10 ** (rng.normal(0, 0.5, n) + 1.5 * y)  # error ratios spanning decades
        gat = 1 / (1 + np.exp(-(rng.normal(-3, 1.5, n) + 5 * y)))
        fusion = 1 / (1 + np.exp(-(rng.normal(-3, 1.2, n) + 6 * y)))
        scores = {"vgae": vgae, "gat": gat, "fusion": fusion}
        decisions = {"vgae": vgae >= 8.0, "gat": gat >= 0.5, "fusion": fusion >= 0.5}
        out[name] = SplitPredictions(y=y, scores=scores, decisions=decisions, alpha=rng.random(n))
    return out


def training_logs(root: Path) -> dict[str, Path]:
    """Lightning-style CSV logs: step rows, epoch rows with validation metrics, a DQN curve."""
    rows = {"autoencoder": [], "curriculum": [], "fusion": []}
    for e in range(20):
        rows["autoencoder"] += [{"epoch": e, "step": 10 * e, "train_loss_step": 2.0 / (e + 1)}, {"epoch": e, "step": 10 * e, "train_loss_epoch": 2.0 / (e + 1), "val_score": 1.0 / (e + 1) + 0.2}]
        rows["curriculum"] += [{"epoch": e, "step": 10 * e, "train_loss_epoch": 1.0 / (e + 1), "val_loss": 0.8 / (e + 1), "val_f1": 1 - 0.5 / (e + 1), "val_mcc": 1 - 0.6 / (e + 1), "curriculum_fraction": min(1.0, 0.1 + e / 15)}]
        rows["fusion"] += [{"step": 250 * e, "epsilon": max(0.05, 1 - e / 10), "loss": 0.5 / (e + 1), "val_f1": 0.9 + e / 500, "mean_alpha": 0.5}]
    files = {}
    for stage, stage_rows in rows.items():
        keys = list(dict.fromkeys(k for r in stage_rows for k in r))
        files[stage] = root / f"{stage}.csv"
        with open(files[stage], "w", newline="") as handle:
            writer = csv.DictWriter(handle, keys)
            writer.writeheader()
            writer.writerows(stage_rows)
    return files


def drawn_texts(fig: Figure) -> list[tuple[Text, Bbox]]:
    """Every non-empty visible text the renderer draws, with its bounding box in pixels.

    Tick labels are taken from the current tick locations inside the view limits only: an
    axis keeps Text objects of ticks it no longer draws.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    tick_labels, drawn = set(), []
    for ax in fig.get_axes():
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            tol = 1e-9 * max(abs(lo), abs(hi), 1.0)
            for locs, labels in ((axis.get_majorticklocs(), axis.get_majorticklabels()), (axis.get_minorticklocs(), axis.get_minorticklabels())):
                for loc, label in zip(locs, labels):
                    tick_labels.add(id(label))
                    if lo - tol <= loc <= hi + tol:
                        drawn.append(label)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                tick_labels.update((id(tick.label1), id(tick.label2)))
    drawn += [t for t in fig.findobj(Text) if id(t) not in tick_labels]
    return [(t, t.get_window_extent(renderer)) for t in drawn if t.get_visible() and t.get_text().strip()]


def overlaps(fig: Figure, tol_px: float = 0.5) -> list[tuple[str, str]]:
    texts = drawn_texts(fig)
    found = []
    for i, (a, box_a) in enumerate(texts):
        for b, box_b in texts[i + 1 :]:
            if min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0) > tol_px and min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0) > tol_px:
                found.append((a.get_text(), b.get_text()))
    return found


@pytest.mark.parametrize("n_splits", [1, 6])
@pytest.mark.parametrize("build", [curves_figure, confusion_figure], ids=["roc_pr_curves", "confusion_matrices"])
def test_split_figures_have_no_overlapping_text(build, n_splits):
    names = SPLITS[3:4] if n_splits == 1 else SPLITS  # test_04: the longest name
    fig = build(predictions(names))
    try:
        texts = [t.get_text() for t, _ in drawn_texts(fig)]
        assert all(name in texts for name in names)
        assert overlaps(fig) == []
    finally:
        plt.close(fig)


@pytest.mark.parametrize("n_stages", [1, 3])
def test_training_figure_has_no_overlapping_text(tmp_path, n_stages):
    files = dict(list(training_logs(tmp_path).items())[:n_stages])
    fig = training_figure(files)
    try:
        texts = [t.get_text() for t, _ in drawn_texts(fig)]
        assert "val_score" in texts and "train_loss_epoch" in texts and "train_loss_step" not in texts
        assert overlaps(fig) == []
    finally:
        plt.close(fig)


def test_overlap_check_sees_overlaps():
    fig = plt.figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.set_title("a title long enough to reach the other one")
    ax.text(0.5, 1.02, "text placed on the title", transform=ax.transAxes, ha="center")
    try:
        assert overlaps(fig)
    finally:
        plt.close(fig)


def test_plot_functions_write_pngs(tmp_path):
    preds = predictions(SPLITS[:2], n=500)
    one_class = {"only_normal": SplitPredictions(y=np.zeros(50, np.int64), scores={m: np.zeros(50) for m in ("vgae", "gat", "fusion")}, decisions={m: np.zeros(50, bool) for m in ("vgae", "gat", "fusion")}, alpha=np.zeros(50))}
    plot_curves(preds, tmp_path / "roc_pr_curves.png")
    plot_curves(one_class, tmp_path / "roc_pr_curves_empty.png")
    plot_confusion({**preds, **one_class}, tmp_path / "confusion_matrices.png")
    plot_training_curves({**training_logs(tmp_path), "missing": tmp_path / "missing.csv"}, tmp_path / "training_curves.png")
    for name in ("roc_pr_curves", "roc_pr_curves_empty", "confusion_matrices", "training_curves"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []
