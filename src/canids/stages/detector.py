"""The deployable detector: VGAE + GAT + DQN fusion behind one call, from raw frames to decisions.

This is what runs in a vehicle: it needs only the three ``model.ckpt`` files (they carry the
vocabulary, the VGAE calibration and the fusion policy) and applies exactly the decision
rule used in training and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from canids.data.frames import Capture
from canids.graphs.build import build_graphs
from canids.graphs.graphset import GraphSet
from canids.graphs.vocab import Vocabulary, known_id_share
from canids.models.dqn import QNetwork
from canids.shape import DETECTOR_STAGES, file_name
from canids.models.gat import GATClassifier
from canids.models.vgae import VGAE, window_score
from canids.stages.checkpoints import load_dqn, load_gat, load_vgae
from canids.stages.loaders import window_loader
from canids.stages.fusion_rule import VGAECalibration, clip_probability, fused_decision, fused_score, fusion_state
from canids.stages.thresholds import DecisionThresholds

if TYPE_CHECKING:
    from canids.stages.onboarding import VehicleCalibration


def checkpoint_paths(variant_dir: str | Path) -> dict[str, Path]:
    """``model.ckpt`` of each detector stage under ``ROOT/{dataset}/{variant}``; refuses an unfinished run."""
    d = Path(variant_dir)
    paths = {stage: d / stage / file_name(stage, "checkpoint") for stage in DETECTOR_STAGES}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{d} is not a finished variant run (ROOT/DATASET/VARIANT); missing {', '.join(missing)}")
    return paths


@dataclass
class Detector:
    vgae: VGAE
    gat: GATClassifier
    policy: QNetwork
    vocab: Vocabulary
    window_size: int
    calibration: VGAECalibration
    #: where the fused score flags a window (the false-alarm budget's threshold, from the fusion checkpoint)
    thresholds: DecisionThresholds = DecisionThresholds()

    @classmethod
    def from_checkpoints(cls, vgae_ckpt: Path, gat_ckpt: Path, fusion_ckpt: Path) -> "Detector":
        vgae, vgae_payload = load_vgae(vgae_ckpt)
        gat, _ = load_gat(gat_ckpt)
        policy, fusion_payload = load_dqn(fusion_ckpt)
        return cls(vgae, gat, policy, Vocabulary.from_dict(vgae_payload["vocab"]), int(vgae_payload["window_size"]), VGAECalibration(**fusion_payload["calibration"]), DecisionThresholds.from_payload(fusion_payload))

    @classmethod
    def from_run(cls, variant_dir: Path) -> "Detector":
        """From ``ROOT/{dataset}/{variant}`` of a finished run."""
        return cls.from_checkpoints(*checkpoint_paths(variant_dir).values())

    @torch.inference_mode()
    def decide(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(decision, fused score, alpha) per window of a PyG batch; all in torch, no copies."""
        score = window_score(batch, self.vgae(batch, sample=False), self.vgae)
        p_vgae = self.calibration.probability(score)
        p_gat = clip_probability(F.softmax(self.gat(batch), -1)[:, 1])
        state = fusion_state(score, p_vgae, p_gat, self.calibration.threshold)
        alpha = self.policy.alphas()[self.policy(state).argmax(-1)]
        t = self.thresholds
        known = torch.as_tensor(known_id_share(batch.node_vocab.cpu().numpy(), batch.ptr.cpu().numpy()), device=p_vgae.device)
        return fused_decision(alpha, p_gat, p_vgae, t.fusion, t.vgae_alone, t.gat_alone, **t.rule(known)).long(), fused_score(alpha, p_gat, p_vgae), alpha

    def onboarded(self, vehicle: "VehicleCalibration") -> "Detector":
        """This detector recalibrated to a vehicle it never saw (``canids.stages.onboarding``); this one is untouched."""
        from canids.stages.onboarding import onboarded_vgae

        return replace(self, vgae=onboarded_vgae(self.vgae, vehicle), calibration=vehicle.calibration, thresholds=vehicle.thresholds)

    def detect_graphs(self, graphs: GraphSet, batch_size: int = 256) -> np.ndarray:
        return torch.cat([self.decide(b)[0] for b in window_loader(graphs, None, batch_size)]).numpy()

    def detect_frames(self, capture: Capture, batch_size: int = 256) -> np.ndarray:
        """Decisions for every window of raw frames (graph building included)."""
        return self.detect_graphs(build_graphs([capture], self.vocab, self.window_size), batch_size)

    def eval(self) -> "Detector":
        for model in (self.vgae, self.gat, self.policy):
            model.eval()
        return self

