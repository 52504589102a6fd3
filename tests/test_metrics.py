"""Attack-class metrics against hand-computed values and brute-force definitions.

The brute-force versions below are written from the definitions (pairs ranked correctly,
precision at every distinct threshold, MCC's formula, every score tried as threshold), not
from the module's implementation, and are compared on small random inputs with ties and
scores spanning decades (where a sigmoid or float32 would lose ties and digits).
"""

import math
import warnings

import numpy as np
import pytest

from canids.stages.metrics import auprc, auroc, best_f1_threshold, binary_metrics, pr_curve, roc_curve


def brute_auroc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg]
    return sum(pairs) / len(pairs)


def brute_curves(y: np.ndarray, s: np.ndarray) -> list[tuple[float, int, int, int, int]]:
    """(threshold, tp, fp, tn, fn) of flagging ``s >= t``, t every distinct score, descending."""
    out = []
    for t in sorted(set(s.tolist()), reverse=True):
        flag = s >= t
        out.append((t, int((flag & (y == 1)).sum()), int((flag & (y == 0)).sum()), int((~flag & (y == 0)).sum()), int((~flag & (y == 1)).sum())))
    return out


def brute_average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """sum over thresholds of (R_k - R_{k-1}) * P_k."""
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    ap, prev_recall = 0.0, 0.0
    for _, tp, fp, _, _ in brute_curves(y, s):
        ap += (tp / n_pos - prev_recall) * tp / (tp + fp)
        prev_recall = tp / n_pos
    return ap


def brute_mcc(tp: int, fp: int, tn: int, fn: int) -> float:
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denom if denom else 0.0


def brute_best_f1(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """Highest threshold among those with maximal attack-class F1."""
    best_t, best_f1 = math.nan, -1.0
    for t, tp, fp, _, fn in brute_curves(y, s):
        f1 = 2 * tp / (2 * tp + fp + fn)
        if f1 > best_f1:
            best_t, best_f1 = t, f1
    return best_t, best_f1


def random_cases(n_cases: int = 150):
    rng = np.random.default_rng(7)
    for k in range(n_cases):
        n = int(rng.integers(2, 40))
        y = (rng.random(n) < [0.1, 0.3, 0.5, 0.8][k % 4]).astype(int)
        if y.min() == y.max():
            y[0] = 1 - y[0]  # both classes
        kind = k % 5
        if kind == 0:
            s = rng.random(n)  # probabilities
        elif kind == 1:
            s = rng.integers(0, 4, n) / 3.0  # heavy ties inside [0, 1]
        elif kind == 2:
            s = 10.0 ** rng.uniform(-6, 9, n)  # error ratios spanning decades
        elif kind == 3:
            s = rng.integers(0, 3, n) * 1e4 + 50.0  # ties far above 1
        else:
            s = 1e6 * (1 + rng.integers(0, 5, n) * 1e-12)  # tiny relative differences
        s = s + y * rng.random() * s.std()
        yield y, s


@pytest.mark.parametrize("case", range(5))
def test_ranking_metrics_match_definitions(case):
    for y, s in list(random_cases())[case::5]:
        assert math.isclose(auroc(y, s), brute_auroc(y, s), rel_tol=0, abs_tol=1e-12)
        assert math.isclose(auprc(y, s), brute_average_precision(y, s), rel_tol=0, abs_tol=1e-12)
        assert best_f1_threshold(y, s) == pytest.approx(brute_best_f1(y, s), rel=0, abs=1e-12)
        assert best_f1_threshold(y, s)[0] == brute_best_f1(y, s)[0]  # the threshold itself exactly


def test_curves_match_definitions():
    for y, s in random_cases(40):
        rows = brute_curves(y, s)
        n_pos, n_neg = int(y.sum()), int((y == 0).sum())
        fpr, tpr, t_roc = roc_curve(y, s)
        assert t_roc[0] == np.inf and (fpr[0], tpr[0]) == (0.0, 0.0)
        np.testing.assert_array_equal(t_roc[1:], [r[0] for r in rows])
        np.testing.assert_allclose(tpr[1:], [r[1] / n_pos for r in rows], rtol=0, atol=1e-15)
        np.testing.assert_allclose(fpr[1:], [r[2] / n_neg for r in rows], rtol=0, atol=1e-15)
        precision, recall, t_pr = pr_curve(y, s)
        np.testing.assert_array_equal(t_pr, [r[0] for r in rows])
        np.testing.assert_allclose(precision, [r[1] / (r[1] + r[2]) for r in rows], rtol=0, atol=1e-15)
        np.testing.assert_allclose(recall, [r[1] / n_pos for r in rows], rtol=0, atol=1e-15)
        assert all(p.dtype == np.float64 for p in (fpr, tpr, t_roc, precision, recall, t_pr))


def test_large_scores_keep_their_order():
    """Error ratios far above 1 are not squashed into ties (no sigmoid on scores)."""
    y = np.array([0, 0, 1, 1])
    s = np.array([1e3, 2e3, 3e3, 4e3])
    assert auroc(y, s) == 1.0 and auprc(y, s) == 1.0
    assert best_f1_threshold(y, s) == (3e3, 1.0)
    close = np.array([1e12, 1e12 * (1 + 1e-15), 1e12 * (1 + 3e-15), 1e12 * (1 + 5e-15)])
    assert auroc(y, close) == 1.0 and best_f1_threshold(y, close)[0] == close[2]


def test_one_class_is_nan_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(auroc(np.zeros(3), np.arange(3)))
        assert math.isnan(auroc(np.ones(3), np.arange(3)))
        assert math.isnan(auprc(np.zeros(3), np.arange(3.0)))
        assert auprc(np.ones(3), np.arange(3.0)) == 1.0  # precision 1 at every recall
        fpr, tpr, _ = roc_curve(np.zeros(3), np.arange(3.0))
        assert not tpr.any() and fpr[-1] == 1.0
        fpr, tpr, _ = roc_curve(np.ones(3), np.arange(3.0))
        assert not fpr.any() and tpr[-1] == 1.0
        precision, recall, _ = pr_curve(np.zeros(3), np.array([0.2, 0.5, 0.5]))
        assert not precision.any() and not recall.any()


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


def test_mcc_matches_formula_including_zero_denominators():
    rng = np.random.default_rng(3)
    cases = [(np.zeros(5), np.zeros(5)), (np.ones(4), np.ones(4)), (np.ones(4), np.zeros(4)), (np.zeros(4), np.ones(4)), (np.array([0, 1]), np.array([1, 1]))]
    cases += [(rng.random(30) < 0.3, rng.random(30) < 0.4) for _ in range(30)]
    for y, pred in cases:
        m = binary_metrics(y, pred)
        assert math.isclose(m["mcc"], brute_mcc(m["tp"], m["fp"], m["tn"], m["fn"]), rel_tol=0, abs_tol=1e-12)
    assert binary_metrics(np.zeros(5), np.zeros(5))["mcc"] == 0.0  # no attacks, no alarms: 0, not 1


def test_a_split_without_attack_windows_has_no_f1_only_false_alarms():
    m = binary_metrics(np.zeros(6), np.array([0, 1, 0, 0, 1, 0]), np.linspace(0, 1, 6), hours=0.5)
    assert m["f1"] is None and m["precision"] is None and m["recall"] is None
    assert m["fp"] == 2 and m["false_alarms_per_hour"] == 4.0 and m["fpr"] == 2 / 6
    assert math.isnan(m["auroc"])


def test_flag_nothing_gets_zero_f1_not_weighted_credit():
    y = np.array([0] * 99 + [1])
    m = binary_metrics(y, np.zeros(100))
    assert m["f1"] == 0.0 and m["accuracy"] == 0.99


def test_ranking_metrics_hand_values():
    y = np.array([0, 0, 1, 1])
    assert auroc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auroc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auroc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert math.isclose(auprc(y, np.array([0.1, 0.2, 0.3, 0.4])), 1.0)
    m = binary_metrics(y, np.array([0, 1, 0, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert m["auroc"] == 0.75 and math.isclose(m["auprc"], (1 + 2 / 3) / 2)


def test_best_f1_threshold_separates():
    y = np.array([0, 0, 0, 1, 1])
    threshold, f1 = best_f1_threshold(y, np.array([0.1, 0.2, 0.3, 0.7, 0.9]))
    assert f1 == 1.0 and threshold == 0.7
