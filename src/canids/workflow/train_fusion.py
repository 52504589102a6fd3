"""The fusion stage's job: train the DQN that weighs the VGAE against the GAT per window."""

from __future__ import annotations

import sys
import time

from canids.graphs.shards import load_graphsets
from canids.models.dqn import DQNConfig
from canids.stages.checkpoints import load_dqn, load_gat, load_vgae, parameter_count, save_checkpoint
from canids.stages.fusion import train_fusion
from canids.stages.fusion_apply import detector_outputs
from canids.stages.fusion_rule import STATE_FEATURES, VGAECalibration
from canids.workflow.job import Job
from canids.workflow.training_run import drop_resume_state, prepare, publish, teacher_manifest, upstream, write_curves


def run(job: Job) -> dict:
    t0 = time.perf_counter()
    pre, ae, gat_m = upstream(job, "preprocess"), upstream(job, "autoencoder"), upstream(job, "curriculum")
    teacher_m = teacher_manifest(job)
    prepared = prepare(job, [job.inputs["preprocess"], job.inputs["autoencoder"], job.inputs["curriculum"], job.teacher])
    section = prepared.section
    sets, _ = load_graphsets(pre.artifact("train_graphs"))
    vgae, vgae_payload = load_vgae(ae.artifact("checkpoint"))
    gat, _ = load_gat(gat_m.artifact("checkpoint"))
    calibration = VGAECalibration(**vgae_payload["calibration"])
    val = sets["val"]
    outputs = detector_outputs(vgae, calibration, gat, val)
    model_cfg = DQNConfig.of(section.model, state_dim=len(STATE_FEATURES))
    teacher = load_dqn(teacher_m.artifact("checkpoint"))[0] if teacher_m else None
    kd_alpha = job.settings.distillation.alpha if teacher is not None else 0.0
    result = train_fusion(outputs, val, model_cfg, section, seed=job.settings.training.seed, teacher=teacher, kd_alpha=kd_alpha, calibration=calibration, resume_dir=job.resume_dir)
    save_checkpoint(job.output("checkpoint"), "dqn", result.q_net, logreg=result.logreg, state_features=list(STATE_FEATURES), calibration=vgae_payload["calibration"], decision_thresholds=result.thresholds.to_dict())
    write_curves(job.output("training_curves"), result.curve)
    drop_resume_state(job)
    metrics = {**result.metrics, "parameter_count": parameter_count(result.q_net)}
    if not result.metrics["not_worse_than_best_single"]:
        print(f"[fusion] WARNING: fusion val F1 {result.metrics['val_f1']:.4f} is below the best single model (gat {result.metrics['val_f1_gat']:.4f}, vgae {result.metrics['val_f1_vgae']:.4f})", file=sys.stderr)
    return publish(job, hyperparameters=prepared.settings, upstream_manifests=[pre, ae, gat_m, *([teacher_m] if teacher_m else [])], pre=pre, wall_time_s=time.perf_counter() - t0, metrics=metrics)
