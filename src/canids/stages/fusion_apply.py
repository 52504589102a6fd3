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
from canids.graphs.vocab import known_id_share
from canids.models.dqn import QNetwork
from canids.models.gat import GATClassifier
from canids.models.vgae import VGAE
from canids.stages.autoencoder import score_windows
from canids.stages.curriculum import predict_proba
from canids.stages.fusion_rule import VGAECalibration, clip_probability, fused_score, fusion_state
from canids.stages.thresholds import DecisionThresholds

__all__ = ["DetectorOutputs", "detector_outputs", "fused_predictions", "logistic_regression_proba", "outputs_from", "policy_alpha"]


@dataclass
class DetectorOutputs:
    """Both detectors' outputs on a set of windows plus the fusion state built from them, and
    each window's share of CAN IDs known to the training vocabulary (float64; what
    ``fusion_rule.familiar`` reads)."""

    vgae_score: np.ndarray
    p_vgae: np.ndarray
    p_gat: np.ndarray
    state: np.ndarray
    known_id_share: np.ndarray

    _FIELDS = ("vgae_score", "p_vgae", "p_gat", "state", "known_id_share")

    def subset(self, idx: np.ndarray) -> "DetectorOutputs":
        return DetectorOutputs(*(getattr(self, f)[idx] for f in self._FIELDS))

    def concat(self, other: "DetectorOutputs") -> "DetectorOutputs":
        return DetectorOutputs(*(np.concatenate([getattr(self, f), getattr(other, f).astype(getattr(self, f).dtype)]) for f in self._FIELDS))

    def flagged(self, fused: np.ndarray, thresholds: DecisionThresholds) -> np.ndarray:
        """The fused detector's decisions on these windows at ``thresholds``."""
        return thresholds.flagged(fused, self.p_vgae, self.p_gat, self.known_id_share)


def detector_outputs(vgae: VGAE, calibration: VGAECalibration, gat: GATClassifier, graphs: GraphSet) -> DetectorOutputs:
    return outputs_from(torch.as_tensor(score_windows(vgae, graphs)), torch.as_tensor(predict_proba(gat, graphs)), calibration, window_known_id_shares(graphs))


def window_known_id_shares(graphs: GraphSet) -> np.ndarray:
    """``known_id_share`` of every window of a set."""
    return known_id_share(graphs.node_vocab.numpy(), graphs.node_ptr.numpy())


def outputs_from(score: torch.Tensor, p_gat: torch.Tensor, calibration: VGAECalibration, known: np.ndarray) -> DetectorOutputs:
    """Fusion inputs from raw VGAE scores, GAT attack probabilities and known-ID shares."""
    p_vgae = calibration.probability(score).float()
    p_gat = clip_probability(p_gat)
    state = fusion_state(score, p_vgae, p_gat, calibration.threshold)
    return DetectorOutputs(score.numpy(), p_vgae.numpy(), p_gat.numpy(), state.numpy(), np.asarray(known, np.float64))


def policy_alpha(q_net: QNetwork, state: np.ndarray) -> np.ndarray:
    """Greedy fusion weight per window."""
    with torch.no_grad():
        q = q_net(torch.as_tensor(state))
    return q_net.alphas()[q.argmax(-1)].numpy()


def fused_predictions(q_net: QNetwork, out: DetectorOutputs, thresholds: DecisionThresholds = DecisionThresholds()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(decision, fused score, alpha) per window under the one decision rule at ``thresholds``."""
    alpha = torch.as_tensor(policy_alpha(q_net, out.state))
    fused = fused_score(alpha, torch.as_tensor(out.p_gat), torch.as_tensor(out.p_vgae)).numpy()
    return out.flagged(fused, thresholds).astype(np.int64), fused, alpha.numpy()


def logistic_regression_proba(model: dict, x: np.ndarray) -> np.ndarray:
    """The logistic-regression fusion baseline (fitted by canids.stages.fusion) on fusion states."""
    z = (x - np.asarray(model["mean"])) / np.asarray(model["std"]) @ np.asarray(model["weight"]) + model["bias"]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
