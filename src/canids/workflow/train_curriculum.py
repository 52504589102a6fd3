"""The curriculum stage's job: train the GAT easy-to-hard, difficulty from the trained VGAE."""

from __future__ import annotations

import time

from canids.graphs.shards import load_graphsets
from canids.stages.autoencoder import score_windows
from canids.stages.checkpoints import load_gat, load_vgae, parameter_count, save_checkpoint
from canids.stages.curriculum import train_curriculum
from canids.workflow.job import Job
from canids.workflow.training_run import finish, prepare, publish, teacher_manifest, train_settings, upstream, write_curves


def run(job: Job) -> dict:
    t0 = time.perf_counter()
    pre, ae = upstream(job, "preprocess"), upstream(job, "autoencoder")
    teacher_m = teacher_manifest(job)
    prepared = prepare(job, [job.inputs["preprocess"], job.inputs["autoencoder"], job.teacher])
    section = prepared.section
    sets, extra = load_graphsets(pre.artifact("train_graphs"))
    vgae, _ = load_vgae(ae.artifact("checkpoint"))
    train_scores = score_windows(vgae, sets["train"])
    teacher = load_gat(teacher_m.artifact("checkpoint"))[0] if teacher_m else None
    dist = job.settings.distillation
    result = train_curriculum(
        sets["train"], sets["val"], train_scores, len(extra["vocab"]["can_ids"]) + 1, section.model, train_settings(job, section, "val_f1", "max"), section.curriculum,
        prepared.work_dir, job.resume_dir, teacher, dist.alpha if teacher else 0.0, dist.temperature,
    )
    save_checkpoint(job.output("checkpoint"), "gat", result.model, vocab=extra["vocab"], window_size=extra["window_size"])
    write_curves(job.output("curriculum_schedule"), result.schedule)
    finish(job, prepared)
    metrics = {**result.metrics, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "parameter_count": parameter_count(result.model), "batch_size": result.batch_size, "schedule": result.schedule}
    return publish(job, hyperparameters={**prepared.settings, "batch_size_used": result.batch_size}, upstream_manifests=[pre, ae, *([teacher_m] if teacher_m else [])], pre=pre, wall_time_s=time.perf_counter() - t0, metrics=metrics)
