"""The autoencoder stage's job: train the VGAE on attack-free windows, calibrate its score."""

from __future__ import annotations

import time

from canids.graphs.shards import load_graphsets
from canids.stages.autoencoder import train_autoencoder
from canids.stages.checkpoints import load_vgae, parameter_count, save_checkpoint
from canids.stages.fusion_rule import VGAECalibration
from canids.workflow.job import Job
from canids.workflow.training_run import finish, prepare, publish, teacher_manifest, train_settings, upstream


def run(job: Job) -> dict:
    t0 = time.perf_counter()
    pre = upstream(job, "preprocess")
    teacher_m = teacher_manifest(job)
    prepared = prepare(job, [job.inputs["preprocess"], job.teacher])
    section = prepared.section
    sets, extra = load_graphsets(pre.artifact("train_graphs"))
    teacher = load_vgae(teacher_m.artifact("checkpoint"))[0] if teacher_m else None
    kd_alpha = job.settings.distillation.alpha if teacher is not None else 0.0
    result = train_autoencoder(sets["train"], sets["val"], len(extra["vocab"]["can_ids"]) + 1, section.model, train_settings(job, section, "val_score", "min"), prepared.work_dir, job.resume_dir, teacher, kd_alpha)
    calibration = VGAECalibration.fit(result.threshold, result.val_normal_scores)
    save_checkpoint(job.output("checkpoint"), "vgae", result.model, threshold=result.threshold, calibration={"threshold": calibration.threshold, "log_scale": calibration.log_scale}, vocab=extra["vocab"], window_size=extra["window_size"])
    finish(job, prepared)
    metrics = {**result.metrics, "threshold": result.threshold, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "parameter_count": parameter_count(result.model), "batch_size": result.batch_size}
    return publish(job, hyperparameters={**prepared.settings, "batch_size_used": result.batch_size}, upstream_manifests=[pre, *([teacher_m] if teacher_m else [])], pre=pre, wall_time_s=time.perf_counter() - t0, metrics=metrics)
