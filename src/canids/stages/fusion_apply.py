"""Both detectors and the fusion policy applied to a set of windows, in batches (torch).

What evaluation and fusion training need from trained models: the VGAE's scores, the GAT's
probabilities, the fusion state built from them (``canids.stages.fusion_rule``), and the
policy's decisions. The deployable ``Detector`` and the NumPy runtime apply the same rule
window by window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from canids.graphs.graphset import GraphSet
from canids.models.dqn import QNetwork
from canids.models.gat import GATClassifier
from canids.models.vgae import VGAE
from canids.stages.autoencoder import score_windows
from canids.stages.curriculum import predict_proba
from canids.stages.fusion_rule import F1_OPTIMAL, VGAECalibration, clip_probability, fused_decision, fused_score, fusion_state

__all__ = ["DetectorOutputs", "detector_outputs", "fused_predictions", "logistic_regression_proba", "outputs_from", "policy_alpha"]


@dataclass
class DetectorOutputs:
    """Both detectors' outputs on a set of windows plus the fusion state built from them."""

    vgae_score: np.ndarray
    p_vgae: np.ndarray
    p_gat: np.ndarray
    state: np.ndarray

    def subset(self, idx: np.ndarray) -> "DetectorOutputs":
        return DetectorOutputs(self.vgae_score[idx], self.p_vgae[idx], self.p_gat[idx], self.state[idx])

    def concat(self, other: "DetectorOutputs") -> "DetectorOutputs":
        return DetectorOutputs(*(np.concatenate([getattr(self, f), getattr(other, f).astype(getattr(self, f).dtype)]) for f in ("vgae_score", "p_vgae", "p_gat", "state")))


def detector_outputs(vgae: VGAE, calibration: VGAECalibration, gat: GATClassifier, graphs: GraphSet) -> DetectorOutputs:
    return outputs_from(torch.as_tensor(score_windows(vgae, graphs)), torch.as_tensor(predict_proba(gat, graphs)), calibration)


def outputs_from(score: torch.Tensor, p_gat: torch.Tensor, calibration: VGAECalibration) -> DetectorOutputs:
    """Fusion inputs from raw VGAE scores and GAT attack probabilities."""
    p_vgae = calibration.probability(score).float()
    p_gat = clip_probability(p_gat)
    state = fusion_state(score, p_vgae, p_gat, calibration.threshold)
    return DetectorOutputs(score.numpy(), p_vgae.numpy(), p_gat.numpy(), state.numpy())


def policy_alpha(q_net: QNetwork, state: np.ndarray) -> np.ndarray:
    """Greedy fusion weight per window."""
    with torch.no_grad():
        q = q_net(torch.as_tensor(state))
    return q_net.alphas()[q.argmax(-1)].numpy()


def fused_predictions(q_net: QNetwork, out: DetectorOutputs, threshold: float = F1_OPTIMAL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(decision, fused score, alpha) per window under the one decision rule."""
    alpha = torch.as_tensor(policy_alpha(q_net, out.state))
    p_gat, p_vgae = torch.as_tensor(out.p_gat), torch.as_tensor(out.p_vgae)
    return fused_decision(alpha, p_gat, p_vgae, threshold).long().numpy(), fused_score(alpha, p_gat, p_vgae).numpy(), alpha.numpy()


def logistic_regression_proba(model: dict, x: np.ndarray) -> np.ndarray:
    """The logistic-regression fusion baseline (fitted by canids.stages.fusion) on fusion states."""
    z = (x - np.asarray(model["mean"])) / np.asarray(model["std"]) @ np.asarray(model["weight"]) + model["bias"]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
