"""The fusion rule, once: calibrated VGAE probability, the DQN's state, the fused score and decision.

Training rewards, validation, evaluation, the deployable ``Detector`` and the NumPy-only
in-vehicle runtime all decide with these functions (the replaced pipeline used three
different decision rules). They are written against a tiny set of array operations
(``Ops``) so that the same code runs on torch tensors (``torch_ops()``, the reference used in
training and evaluation) and on one window's Python floats in the runtime (``SCALAR``),
without the runtime importing torch.

The rule: action ``a`` of the DQN selects a fusion weight ``alpha``; the fused attack score is
``alpha * p_gat + (1 - alpha) * p_vgae``; a window is flagged when it reaches the decision
threshold (0.5, or higher where a false-alarm budget put it) and one detector raised it at its own
threshold, or when the VGAE alone is beyond every score it gave attack-free traffic. On a window
whose CAN IDs the models mostly never saw (another vehicle), the VGAE decides alone (``flagged``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["F1_OPTIMAL", "NEVER", "Ops", "SCALAR", "familiar", "flagged", "STATE_FEATURES", "VGAECalibration", "fused_decision", "fused_score", "fusion_state", "log_spread", "torch_ops"]

#: What the DQN sees of a window: both detectors' views, nothing else (see ``fusion_state``).
STATE_FEATURES = ("p_vgae", "p_gat", "vgae_log_ratio", "gat_logit", "disagreement", "agree", "gat_entropy")
#: Probabilities are kept this far from 0 and 1, so logits and entropies stay finite.
P_EPS = 1e-7


@dataclass(frozen=True)
class Ops:
    """The array operations the fusion maths needs, for one kind of array."""

    log: Callable[[Any], Any]
    log1p: Callable[[Any], Any]
    log2: Callable[[Any], Any]
    clip: Callable[[Any, float | None, float | None], Any]
    sigmoid: Callable[[Any], Any]
    abs: Callable[[Any], Any]
    like: Callable[[Any, Any], Any]  # value cast to the dtype of a reference
    stack: Callable[[list], Any]  # features along the last axis, float32


@functools.lru_cache(maxsize=1)
def torch_ops() -> Ops:
    """Tensor operations (the reference: training and evaluation decide with these)."""
    import torch

    return Ops(
        log=torch.log,
        log1p=torch.log1p,
        log2=torch.log2,
        clip=lambda x, lo, hi: torch.clamp(x, lo, hi),
        sigmoid=torch.sigmoid,
        abs=torch.abs,
        like=lambda x, ref: x.to(ref.dtype),
        stack=lambda xs: torch.stack(xs, -1).float(),
    )


def _f32(x: float) -> float:
    """A float rounded to float32, as torch holds it."""
    return float(np.float32(x))


#: One window's Python floats, rounded to float32 where torch holds float32 values.
SCALAR = Ops(
    log=math.log,
    log1p=math.log1p,
    log2=math.log2,
    clip=lambda x, lo, hi: min(max(x, lo if lo is not None else x), hi if hi is not None else x),
    sigmoid=lambda z: _f32(1.0 / (1.0 + math.exp(-z))),
    abs=abs,
    like=lambda x, ref: float(x),
    stack=lambda xs: np.array(xs, dtype=np.float32),
)


@dataclass
class VGAECalibration:
    """Maps a raw VGAE score to a probability-like value: 0.5 exactly at the threshold.

    ``log_scale`` is the spread of log scores of normal validation windows, so one unit of
    the sigmoid is one typical deviation of normal traffic.
    """

    threshold: float
    log_scale: float

    def probability(self, scores: Any, ops: Ops | None = None) -> Any:
        ops = ops or torch_ops()
        z = (ops.log(ops.clip(scores, 1e-12, None)) - math.log(max(self.threshold, 1e-12))) / self.log_scale
        return ops.sigmoid(ops.clip(z, -30, 30))

    @classmethod
    def fit(cls, threshold: float, normal_scores: np.ndarray) -> "VGAECalibration":
        return cls(threshold=float(threshold), log_scale=log_spread(normal_scores))


def log_spread(normal_scores: np.ndarray) -> float:
    """The standard deviation of normal windows' log scores (at least 0.05; 0.1 from one window):
    the unit of the VGAE's calibration and of the margins put above normal traffic."""
    if len(normal_scores) < 2:
        return 0.1
    return max(float(np.std(np.log(np.maximum(normal_scores, 1e-12)))), 0.05)


def clip_probability(p: Any, ops: Ops | None = None) -> Any:
    return (ops or torch_ops()).clip(p, P_EPS, 1 - P_EPS)


def fusion_state(score: Any, p_vgae: Any, p_gat: Any, threshold: float, ops: Ops | None = None) -> Any:
    """The DQN's state per window (``STATE_FEATURES``): both detectors' views, nothing else.

    The window's own features are left out on purpose: with them the agent learnt which
    attack patterns of validation to believe, and on an attack it never saw (set_01's
    systematic attack on an unseen vehicle) it extrapolated backwards, trusting the silent
    detector on attack windows (fused AUROC 0.17). From the detectors' outputs alone it
    learns how far to believe each one.
    """
    ops = ops or torch_ops()
    p_gat = clip_probability(p_gat, ops)
    logit = ops.log(p_gat) - ops.log1p(-p_gat)
    entropy = -(p_gat * ops.log2(p_gat) + (1 - p_gat) * ops.log2(1 - p_gat))
    log_ratio = ops.clip(ops.log(ops.clip(score, 1e-12, None) / threshold), -10, 10) / 5.0
    agree = ops.like((p_gat >= 0.5) == (p_vgae >= 0.5), p_gat)
    return ops.stack([ops.like(p_vgae, p_gat), p_gat, ops.like(log_ratio, p_gat), ops.clip(logit, -20, 20) / 10.0, ops.abs(p_gat - p_vgae), agree, entropy])


def fused_score(alpha: Any, p_gat: Any, p_vgae: Any) -> Any:
    return alpha * p_gat + (1.0 - alpha) * p_vgae


#: The decision threshold on every probability-like output at its own point: the VGAE's
#: calibration puts its threshold (``autoencoder.choose_threshold``: from normal traffic) at
#: 0.5, the GAT's validation-F1-optimal argmax is 0.5 and the
#: fused score is their weighted mean. A false-alarm budget (``canids.stages.thresholds``) only
#: ever raises a threshold above it.
F1_OPTIMAL = 0.5


#: A threshold no probability reaches: a detector that may never raise an alarm alone.
NEVER = 2.0


def familiar(known_id_share: Any, familiar_id_share: float) -> Any:
    """Whether a window is traffic of the vehicle the models trained on: at least
    ``familiar_id_share`` of its CAN IDs (nodes) are in the training vocabulary
    (``canids.graphs.vocab.known_id_share``). 0 makes every window familiar (checkpoints from
    before the rule): a share is never below it. Both shares are float64, so torch, NumPy and the
    runtime's Python floats agree.
    """
    return known_id_share >= familiar_id_share


def flagged(
    score: Any, p_gat: Any, p_vgae: Any, threshold: float = F1_OPTIMAL, vgae_alone: float = NEVER, gat_alone: float = NEVER, *,
    vgae: float = F1_OPTIMAL, gat: float = F1_OPTIMAL, known_id_share: Any = 1.0, familiar_id_share: float = 0.0,
) -> Any:
    """The one decision rule.

    On a familiar window (``familiar``): the fused ``score`` reaches ``threshold`` and a detector
    raised the alarm at its own threshold (``vgae``, ``gat``), or the VGAE is surer than it ever
    was on attack-free traffic (``vgae_alone``; ``gat_alone`` is kept for symmetry and set to
    NEVER, see ``canids.stages.thresholds``). On any other window: the VGAE at ``vgae``, alone.

    Why each part:
    - The VGAE beyond every normal score is never outvoted. The policy learnt on validation, where
      a VGAE alarm the GAT contradicts was a false alarm; on a vehicle or an attack the GAT never
      saw, the VGAE is the only detector that fires, and the policy trusted the silent one
      (set_01's unseen vehicle, onboarded: VGAE F1 0.99, fusion 0.33).
    - An alarm needs a detector that raised it: a fused score over its threshold from two
      detectors each under theirs is no evidence either has (a synthetic student: 6 such false
      alarms on the known vehicle where neither detector had one).
    - On another vehicle the GAT is a classifier out of its domain: its lone alarms were false
      (hcrl_sa's Spark: fusion 17 false positives where the VGAE alone had 3, the GAT 209; set_01's
      unseen vehicle: 12 where the VGAE had 2), while the VGAE's threshold comes from normal
      traffic and transfers. A window is unfamiliar by its IDs, something any vehicle shows:
      a known vehicle's normal windows have every ID in the vocabulary, another vehicle's
      0-77 % of them.
    """
    vgae_raised = p_vgae >= vgae
    own = ((score >= threshold) & (vgae_raised | (p_gat >= gat))) | (p_vgae >= vgae_alone) | (p_gat >= gat_alone)
    if familiar_id_share <= 0:
        return own
    return _where(familiar(known_id_share, familiar_id_share), own, vgae_raised)


def _where(condition: Any, a: Any, b: Any) -> Any:
    """Per element ``a`` where ``condition`` holds, else ``b``: tensors, arrays or one window's bools."""
    if isinstance(condition, (bool, np.bool_)):
        return a if condition else b
    if isinstance(condition, np.ndarray):
        return np.where(condition, a, b)
    import torch

    return torch.where(condition, a, b)


def fused_decision(alpha: Any, p_gat: Any, p_vgae: Any, threshold: float = F1_OPTIMAL, vgae_alone: float = NEVER, gat_alone: float = NEVER, **rule: Any) -> Any:
    """``flagged`` for the fused score of weight ``alpha`` (``rule``: its keyword arguments)."""
    return flagged(fused_score(alpha, p_gat, p_vgae), p_gat, p_vgae, threshold, vgae_alone, gat_alone, **rule)
