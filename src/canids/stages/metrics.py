"""Detection metrics for the attack class, in plain numpy (no scikit-learn dependency).

Attack-class F1, never support-weighted: on CAN data 99 % of windows can be normal, and a
weighted F1 rewards a detector that flags nothing.
"""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, int]:
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    return {
        "tp": int((y_true & y_pred).sum()),
        "fp": int((~y_true & y_pred).sum()),
        "tn": int((~y_true & ~y_pred).sum()),
        "fn": int((y_true & ~y_pred).sum()),
    }


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray | None = None, hours: float | None = None) -> dict[str, float]:
    """F1/precision/recall/MCC/FPR of the attack class, AUROC/AUPRC from ``score``."""
    c = confusion(y_true, y_pred)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    denom = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / denom if denom else 0.0
    out = {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "mcc": float(mcc),
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
        "accuracy": (tp + tn) / max(tp + tn + fp + fn, 1),
        "n_windows": int(len(y_true)),
        "n_attack_windows": int(np.asarray(y_true).astype(bool).sum()),
        **c,
    }
    if score is not None:
        out["auroc"] = auroc(y_true, score)
        out["auprc"] = auprc(y_true, score)
    if hours is not None:
        out["false_alarms_per_hour"] = fp / hours if hours > 0 else float("nan")
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under ROC via the rank-sum (Mann-Whitney U) statistic, ties averaged; NaN if one class."""
    y = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision (step-wise area under the precision-recall curve); NaN without positives."""
    y = np.asarray(y_true).astype(bool)
    if y.sum() == 0:
        return float("nan")
    precision, recall, _ = pr_curve(y, score)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, s = _sorted_desc(y_true, score)
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / max(y.sum(), 1)]
    fpr = np.r_[0.0, fps / max((~y).sum(), 1)]
    return fpr, tpr, np.r_[np.inf, s[distinct]]


def pr_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, s = _sorted_desc(y_true, score)
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    precision = tps / (distinct + 1)
    recall = tps / max(y.sum(), 1)
    return precision, recall, s[distinct]


def best_f1_threshold(y_true: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """Threshold maximising attack-class F1 (flag when ``score >= threshold``)."""
    precision, recall, thresholds = pr_curve(y_true, score)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    k = int(np.argmax(f1))
    return float(thresholds[k]), float(f1[k])


def _sorted_desc(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    return np.asarray(y_true).astype(bool)[order], s[order]


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_vals = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_vals)) + 1]
    ends = np.r_[starts[1:], len(values)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks
