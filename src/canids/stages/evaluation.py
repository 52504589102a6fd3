"""Evaluation on the official test splits: every detector, per split and per attack type.

Thresholds are the ones chosen on validation and are never re-tuned on test data, so the
unknown-vehicle splits (test_02, test_04) show honestly how they transfer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from canids.graphs.graphset import GraphSet
from canids.stages.fusion_apply import DetectorOutputs, fused_predictions, logistic_regression_proba
from canids.stages.fusion_rule import F1_OPTIMAL, familiar
from canids.stages.metrics import binary_metrics, confusion, traffic_hours
from canids.stages.thresholds import DecisionThresholds

#: The detectors every split reports (metrics.json ``splits.SPLIT.MODEL``), then two fusion baselines.
MODELS = ("vgae", "gat", "fusion")
BASELINES = ("baseline_weighted_average", "baseline_logistic_regression")


@dataclass
class SplitPredictions:
    """Scores and decisions of every model on one split (kept for plots)."""

    y: np.ndarray
    #: per model, the score its ranking metrics (AUROC, AUPRC, curves) are computed on; the
    #: fusion's is its decision score at the thresholds (``DecisionThresholds.decision_score``)
    scores: dict[str, np.ndarray]
    decisions: dict[str, np.ndarray]
    alpha: np.ndarray
    #: the policy's fused score, before any threshold (what the thresholds apply to)
    fused: np.ndarray | None = None
    #: per window, whether it is the training vehicle's traffic (``fusion_rule.familiar``); None: all are
    familiar: np.ndarray | None = None


def predict_split(out: DetectorOutputs, graphs: GraphSet, q_net, logreg: dict, thresholds: DecisionThresholds = DecisionThresholds(), fixed_alpha: float = 0.5) -> SplitPredictions:
    """Every model's scores and decisions; the detectors decide at ``thresholds`` (the fusion
    stage's false-alarm budget, or the F1-optimal 0.5), the two baselines at 0.5."""
    _, fusion_score, alpha = fused_predictions(q_net, out)
    avg = fixed_alpha * out.p_gat + (1 - fixed_alpha) * out.p_vgae
    lr = logistic_regression_proba(logreg, out.state) if len(out.state) else np.zeros(0)
    vgae, gat, _ = MODELS
    weighted, logistic = BASELINES
    scores = {vgae: out.vgae_score, gat: out.p_gat, weighted: avg, logistic: lr}  # the fusion's: at_thresholds
    baselines = {weighted: avg >= F1_OPTIMAL, logistic: lr >= F1_OPTIMAL}
    return at_thresholds(SplitPredictions(y=graphs.y.numpy(), scores=scores, decisions=baselines, alpha=alpha, fused=fusion_score), out, thresholds)


def at_thresholds(pred: SplitPredictions, out: DetectorOutputs, thresholds: DecisionThresholds) -> SplitPredictions:
    """The same predictions deciding at other thresholds, without running any model again
    (the fused decision depends only on the scores, as ``fusion_rule.flagged`` says).

    The fusion's ranking score is its decision score at these thresholds: the fused score
    alone leaves out the VGAE's right to flag a window alone, so its AUROC described a detector
    that does not decide (set_01's unseen vehicle: fused score 0.977, decisions made by a
    score of AUROC 0.9997)."""
    vgae, gat, fusion = MODELS
    detectors = {vgae: out.p_vgae >= thresholds.vgae, gat: out.p_gat >= thresholds.gat, fusion: out.flagged(pred.fused, thresholds)}
    decisions = {**detectors, **{name: d for name, d in pred.decisions.items() if name not in detectors}}
    scores = {**pred.scores, fusion: thresholds.decision_score(pred.fused, out.p_vgae, out.p_gat, out.known_id_share)}
    return replace(pred, decisions=decisions, scores=scores, familiar=familiar(out.known_id_share, thresholds.familiar_id_share))


def capture_hours(graphs: GraphSet) -> float:
    """Traffic time covered by the split's windows (sum over captures), for false alarms per hour."""
    return traffic_hours(graphs.t_start.numpy(), graphs.capture.numpy())


def split_metrics(pred: SplitPredictions, graphs: GraphSet) -> dict:
    """{MODEL: {METRIC: value}} plus per-attack-type metrics and confusion matrices."""
    hours = capture_hours(graphs)
    result: dict[str, dict] = {}
    attack_type = graphs.attack_type.numpy()
    normal_idx = graphs.attack_types.index("normal") if "normal" in graphs.attack_types else -1
    for model, decision in pred.decisions.items():
        m = binary_metrics(pred.y, decision, pred.scores[model], hours=hours)
        m["hours"] = hours
        per_type = {}
        for k, name in enumerate(graphs.attack_types):
            if k == normal_idx:
                continue
            mask = (attack_type == k) & (pred.y == 1)
            if mask.any():
                per_type[name] = {"recall": float(decision[mask].mean()), "n_attack_windows": int(mask.sum())}
        m["per_attack_type"] = per_type
        m["confusion"] = confusion(pred.y, decision)
        result[model] = m
    result["fusion"]["mean_alpha"] = float(pred.alpha.mean()) if len(pred.alpha) else float("nan")
    result["fusion"].update(reliance(pred))
    return result


def reliance(pred: SplitPredictions) -> dict:
    """How the fusion decided a split's windows: the share it left to the VGAE alone because
    they were another vehicle's (``unfamiliar_share``), and the share of all windows on which it
    leaned on each detector (``leaned_on``: the policy's weight below 0.5 leans on the VGAE, above
    on the GAT; another vehicle's windows lean on the VGAE)."""
    n = len(pred.alpha)
    if n == 0:
        return {"unfamiliar_share": None, "leaned_on": None}
    known = pred.familiar if pred.familiar is not None else np.ones(n, bool)
    alpha = np.asarray(pred.alpha)
    gat = known & (alpha > 0.5)
    vgae = ~known | (alpha < 0.5)
    return {"unfamiliar_share": float((~known).mean()), "leaned_on": {"vgae": float(vgae.mean()), "gat": float(gat.mean()), "even": float((~vgae & ~gat).mean())}}
