"""A finished variant's three trained models, as the stages after fusion read them from their job's inputs."""

from __future__ import annotations

from dataclasses import dataclass

from canids.models.dqn import QNetwork
from canids.models.gat import GATClassifier
from canids.models.vgae import VGAE
from canids.shape import DETECTOR_STAGES
from canids.stages.checkpoints import load_dqn, load_gat, load_vgae
from canids.stages.fusion_rule import VGAECalibration
from canids.stages.thresholds import DecisionThresholds
from canids.workflow.job import Job
from canids.workflow.manifest import LoadedManifest, load_manifest


@dataclass
class TrainedRun:
    """The preprocess manifest, each detector stage's manifest, and the models they pin."""

    preprocess: LoadedManifest
    manifests: dict[str, LoadedManifest]
    vgae: VGAE
    gat: GATClassifier
    policy: QNetwork
    #: the fusion checkpoint's payload: its logistic-regression baseline, calibration and thresholds
    fusion_payload: dict

    @property
    def calibration(self) -> VGAECalibration:
        return VGAECalibration(**self.fusion_payload["calibration"])

    @property
    def thresholds(self) -> DecisionThresholds:
        return DecisionThresholds.from_payload(self.fusion_payload)


def load_trained(job: Job) -> TrainedRun:
    """Every manifest is checked against the job's dataset and stage before a model is loaded."""
    pre = load_manifest(job.inputs["preprocess"], stage="preprocess", dataset=job.dataset)
    models = {stage: load_manifest(job.inputs[stage], stage=stage, dataset=job.dataset) for stage in DETECTOR_STAGES}
    ae, gat_m, fus = (models[stage] for stage in DETECTOR_STAGES)
    vgae, _ = load_vgae(ae.artifact("checkpoint"))
    gat, _ = load_gat(gat_m.artifact("checkpoint"))
    policy, payload = load_dqn(fus.artifact("checkpoint"))
    return TrainedRun(pre, models, vgae, gat, policy, payload)
