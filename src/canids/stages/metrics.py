"""Detection metrics for the attack class: counts by hand, curves and areas from scikit-learn.

Attack-class F1, never support-weighted: on CAN data 99 % of windows can be normal, and a
weighted F1 rewards a detector that flags nothing.

ROC, precision-recall, AUROC and average precision come from ``sklearn.metrics``
(``roc_curve``, ``precision_recall_curve``, ``roc_auc_score``, ``average_precision_score``).
They work in float64 on the raw scores (no sigmoid, so VGAE error ratios spanning decades
keep their order) and handle ties exactly: every distinct score is a threshold, tied scores
form one step, and AUROC is the Mann-Whitney statistic with ties counted 1/2. Scores must
be finite: scikit-learn raises ``ValueError`` on NaN or infinity.

What differs from scikit-learn's own conventions, and is converted here:

* ``roc_curve`` is called with ``drop_intermediate=False`` so no threshold is dropped; it
  starts at (0, 0) with threshold +inf, as here.
* ``precision_recall_curve`` orders thresholds ascending and appends a closing
  (precision 1, recall 0) point without a threshold; ``pr_curve`` returns thresholds
  descending without that point.
* with one class scikit-learn warns and returns NaN rates (ROC), recall 1 (PR without
  attacks) or NaN / 0 areas. Here AUROC (and AUPRC without attacks) is NaN, computed
  without calling the library, a missing class's rate along a curve is 0, and the library's
  one-class warnings are silenced locally (``_one_class_warnings_ignored``), never globally.

MCC stays the formula on the confusion counts already computed: ``matthews_corrcoef`` gives
the same value (0.0 when a denominator is 0) but not bit for bit (its products round
differently, 1 ulp apart on about 1 in 10 confusion matrices of 1e6 windows), warns when
one label is present, and rebuilds the confusion matrix from the label arrays (~0.2 s on
1e6 windows).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning


def traffic_hours(t_start: np.ndarray, capture: np.ndarray) -> float:
    """Hours of traffic a set of windows covers (sum over captures of its windows' time span,
    widened by one window), the denominator of false alarms per hour."""
    total = 0.0
    for c in np.unique(capture):
        ts = t_start[capture == c]
        if len(ts) > 1:
            total += (ts.max() - ts.min()) * len(ts) / (len(ts) - 1)
    return total / 3600.0


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, int]:
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    return {
        "tp": int((y_true & y_pred).sum()),
        "fp": int((~y_true & y_pred).sum()),
        "tn": int((~y_true & ~y_pred).sum()),
        "fn": int((y_true & ~y_pred).sum()),
    }


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray | None = None, hours: float | None = None) -> dict[str, float | None]:
    """F1/precision/recall/MCC/FPR of the attack class, AUROC/AUPRC from ``score``.

    Without a labelled attack window F1, precision and recall are ``None`` (null in
    metrics.json): a split without attacks measures false alarms, and a 0.0 there would
    read as a detector that missed everything."""
    c = confusion(y_true, y_pred)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    denom = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / denom if denom else 0.0
    if tp + fn == 0:
        # no labelled attack window (an attack-free split, or an unlabelled suppress capture):
        # F1, precision and recall of the attack class are undefined, not 0; false alarms say it all
        f1 = precision = recall = None
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
    """Area under ROC (Mann-Whitney U with ties averaged); NaN if one class is missing."""
    y, s = _inputs(y_true, score)
    if y.all() or not y.any():
        return float("nan")
    return float(skm.roc_auc_score(y, s))


def auprc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision (step-wise area under the precision-recall curve); NaN without attacks."""
    y, s = _inputs(y_true, score)
    if not y.any():
        return float("nan")
    return float(skm.average_precision_score(y, s, pos_label=1))


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), one point per distinct score, from (0, 0) at threshold +inf.

    A rate whose class is absent is 0 all along.
    """
    y, s = _inputs(y_true, score)
    with _one_class_warnings_ignored():
        fpr, tpr, thresholds = skm.roc_curve(y, s, pos_label=1, drop_intermediate=False)
    if y.all():
        fpr = np.zeros_like(fpr)
    if not y.any():
        tpr = np.zeros_like(tpr)
    return fpr, tpr, thresholds


def pr_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) for flagging ``score >= threshold``, thresholds descending.

    One point per distinct score, without scikit-learn's closing (precision 1, recall 0)
    point; recall is 0 all along without attacks.
    """
    y, s = _inputs(y_true, score)
    with _one_class_warnings_ignored():
        precision, recall, thresholds = skm.precision_recall_curve(y, s, pos_label=1, drop_intermediate=False)
    precision, recall = precision[-2::-1], recall[-2::-1]
    if not y.any():
        recall = np.zeros_like(recall)
    return precision, recall, thresholds[::-1]


def best_f1_threshold(y_true: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """Threshold maximising attack-class F1 (flag when ``score >= threshold``); the highest on ties."""
    precision, recall, thresholds = pr_curve(y_true, score)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    k = int(np.argmax(f1))
    return float(thresholds[k]), float(f1[k])


def _inputs(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels (any non-zero label is an attack) and float64 scores, so curves and thresholds are float64."""
    y = np.asarray(y_true).astype(bool).ravel().astype(np.int8)
    return y, np.asarray(score, dtype=np.float64).ravel()


@contextmanager
def _one_class_warnings_ignored() -> Iterator[None]:
    """Silence, for this call only, the warnings scikit-learn gives when one class is missing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"No (positive|negative) (samples|class)", category=UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message=r"No positive class found in y_true", category=UserWarning)
        yield
