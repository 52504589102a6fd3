"""Decision thresholds under a false-alarm budget, chosen on validation attack-free traffic.

A detector that flags its F1-optimal windows can still raise tens of false alarms per hour of
driving, and nobody deploys that. The fusion stage therefore fixes, per detector and for the
fused score, the lowest threshold at or above the F1-optimal one (0.5, ``F1_OPTIMAL``) whose
false alarms on the held-out validation windows' normal traffic stay within
``fusion.<size>.false_alarms_per_hour`` times the hours that traffic lasts. Evaluation decides with
these thresholds and reports the F1-optimal ones beside them; test data never moves a threshold.

The VGAE also gets an "alone" threshold: above the highest score it gave any normal validation
window (no false alarm allowed), it flags a window whatever the fused score says, so fusion never
discards the anomaly detector when it is surer than it ever was on normal traffic.

With little validation traffic the budget allows no false alarm at all (three minutes at 10 per
hour is half an alarm), and the threshold then sits above the highest normal score, halfway to
the next higher score.

The thresholds also carry ``familiar_id_share``: below that share of known CAN IDs a window is
another vehicle's and the VGAE decides it alone at its own threshold (``fusion_rule.flagged``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from canids.stages.fusion_rule import F1_OPTIMAL, NEVER, familiar, flagged


def budget_threshold(normal_scores: np.ndarray, all_scores: np.ndarray, hours: float, budget_per_hour: float, floor: float = F1_OPTIMAL) -> float:
    """Lowest threshold >= ``floor`` at which at most ``budget_per_hour * hours`` of ``normal_scores``
    reach it.

    The threshold sits in the middle of the gap between the highest normal score it must leave
    out and the next higher score of any validation window (``all_scores``), not at the gap's
    edge: a margin transfers to new traffic, and the float32 (torch) and float64 (NumPy
    runtime) versions of one score then decide alike. Ties are never split.
    """
    allowed = int(np.floor(budget_per_hour * max(hours, 0.0) + 1e-9))
    normal = np.sort(np.asarray(normal_scores, np.float64))[::-1]
    if allowed >= len(normal):
        return float(floor)
    left_out = normal[allowed]
    if left_out < floor:
        return float(floor)
    above = np.asarray(all_scores, np.float64)
    above = above[above > left_out]
    upper = float(above.min()) if len(above) else max(1.0, left_out)
    return float((left_out + upper) / 2) if upper > left_out else float(np.nextafter(np.float32(left_out), np.float32(np.inf)))


@dataclass(frozen=True)
class DecisionThresholds:
    """Where each output flags a window: the fused score, the calibrated VGAE probability, the
    GAT probability; and the budget (false alarms per hour) they were chosen for (None: F1-optimal)."""

    fusion: float = F1_OPTIMAL
    vgae: float = F1_OPTIMAL
    gat: float = F1_OPTIMAL
    false_alarms_per_hour: float | None = None
    #: where the VGAE flags a window whatever the fused score says: above every score it gave
    #: the normal windows (``fusion_rule.flagged``); NEVER for the F1-optimal thresholds
    vgae_alone: float = NEVER
    #: the same for the GAT: NEVER. Its probabilities are a classifier's, overconfident on traffic
    #: it never saw (alone, it added 69 and 22 false alarms on hcrl_sa's unseen vehicles and
    #: 42 on set_02 test_01); the VGAE is the detector calibrated against normal traffic
    gat_alone: float = NEVER
    #: below this share of its CAN IDs in the training vocabulary a window is another vehicle's,
    #: decided by the VGAE alone (``fusion_rule.familiar``); 0: every window is familiar
    #: (checkpoints from before the rule)
    familiar_id_share: float = 0.0

    @classmethod
    def f1_optimal(cls, familiar_id_share: float = 0.0) -> "DecisionThresholds":
        return cls(familiar_id_share=familiar_id_share)

    def at_f1_optimal(self) -> "DecisionThresholds":
        """The F1-optimal thresholds under the same rule (the alternative evaluation reports)."""
        return self.f1_optimal(self.familiar_id_share)

    @classmethod
    def for_budget(cls, fused: np.ndarray, p_vgae: np.ndarray, p_gat: np.ndarray, normal: np.ndarray, hours: float, budget_per_hour: float, familiar_id_share: float = 0.0) -> "DecisionThresholds":
        """Each threshold from the same normal windows (``normal``: a boolean mask) and traffic time."""
        fusion, vgae, gat = (budget_threshold(np.asarray(v)[normal], v, hours, budget_per_hour) for v in (fused, p_vgae, p_gat))
        vgae_alone = budget_threshold(np.asarray(p_vgae)[normal], p_vgae, hours, 0.0)
        return cls(fusion, vgae, gat, false_alarms_per_hour=float(budget_per_hour), vgae_alone=vgae_alone, familiar_id_share=float(familiar_id_share))

    def rule(self, known_id_share: Any = 1.0) -> dict[str, Any]:
        """``fusion_rule.flagged``'s keyword arguments at these thresholds, for windows with these shares of known IDs."""
        return {"vgae": self.vgae, "gat": self.gat, "known_id_share": known_id_share, "familiar_id_share": self.familiar_id_share}

    def flagged(self, fused: Any, p_vgae: Any, p_gat: Any, known_id_share: Any = 1.0) -> Any:
        """Which windows the fused detector flags (``fusion_rule.flagged`` at these thresholds)."""
        return flagged(fused, p_gat, p_vgae, self.fusion, self.vgae_alone, self.gat_alone, **self.rule(known_id_share))

    def decision_score(self, fused: np.ndarray, p_vgae: np.ndarray, p_gat: np.ndarray, known_id_share: Any = 1.0) -> np.ndarray:
        """One score per window that ranks as the fused detector decides, flagged where it reaches 1
        (up to rounding at the boundary; decisions come from ``flagged``): on a familiar window the
        fused score over its threshold, capped by the larger detector over its own (an alarm needs
        one), or the VGAE over its "alone" threshold where that can be reached, whichever is larger;
        on another vehicle's window the VGAE over its threshold. AUROC and AUPRC of the fusion are
        computed on it."""
        v, g = np.asarray(p_vgae, np.float64), np.asarray(p_gat, np.float64)
        score = np.minimum(np.asarray(fused, np.float64) / self.fusion, np.maximum(v / self.vgae, g / self.gat))
        for values, alone in ((v, self.vgae_alone), (g, self.gat_alone)):
            if alone <= 1.0:
                score = np.maximum(score, values / alone)
        return np.where(familiar(np.asarray(known_id_share), self.familiar_id_share), score, v / self.vgae)

    @classmethod
    def from_payload(cls, payload: dict) -> "DecisionThresholds":
        """From a fusion checkpoint; checkpoints written before the budget existed decide at 0.5."""
        return cls(**payload["decision_thresholds"]) if "decision_thresholds" in payload else cls()

    def to_dict(self) -> dict:
        return asdict(self)
