"""Attack-class metrics against hand-computed values."""

import math

import numpy as np

from canids.stages.metrics import auprc, auroc, best_f1_threshold, binary_metrics


def test_binary_metrics_attack_class():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    pred = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    m = binary_metrics(y, pred, hours=2.0)
    assert m["precision"] == 2 / 3 and m["recall"] == 2 / 3
    assert math.isclose(m["f1"], 2 / 3)
    assert math.isclose(m["fpr"], 1 / 5)
    assert math.isclose(m["mcc"], (2 * 4 - 1 * 1) / math.sqrt(3 * 3 * 5 * 5))
    assert m["false_alarms_per_hour"] == 0.5
    assert (m["n_windows"], m["n_attack_windows"]) == (8, 3)


def test_flag_nothing_gets_zero_f1_not_weighted_credit():
    y = np.array([0] * 99 + [1])
    m = binary_metrics(y, np.zeros(100))
    assert m["f1"] == 0.0 and m["accuracy"] == 0.99


def test_ranking_metrics():
    y = np.array([0, 0, 1, 1])
    assert auroc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auroc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auroc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert math.isclose(auprc(y, np.array([0.1, 0.2, 0.3, 0.4])), 1.0)
    assert math.isnan(auroc(np.zeros(3), np.arange(3)))


def test_best_f1_threshold_separates():
    y = np.array([0, 0, 0, 1, 1])
    threshold, f1 = best_f1_threshold(y, np.array([0.1, 0.2, 0.3, 0.7, 0.9]))
    assert f1 == 1.0 and 0.3 < threshold <= 0.7
