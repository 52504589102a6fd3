"""What the three training stages' jobs share: settings, seeds, threads, resume state, outputs.

Each training job verifies every upstream manifest (sha256 of each artifact) before any work,
trains, writes its checkpoint and curves atomically, then writes the manifest last. Resume
state and Lightning's working files live on a side path (``Layout.resume_dir``: Snakemake
deletes a failed job's declared outputs, the side path survives so the next attempt
continues) and are removed on success, so a stage directory holds exactly its declared
outputs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canids.settings import OptimiserSettings, stage_settings
from canids.shape import STAGES
from canids.stages.trainer import TrainSettings, configure_threads, seed_everything
from canids.util import atomic_path, atomic_write_text, sha256_file
from canids.workflow.job import Job
from canids.workflow.manifest import LoadedManifest, load_manifest, write_manifest

#: Lightning's working files (best checkpoint, the curve it is writing, the tuner's scratch).
WORK = "lightning"


@dataclass
class Prepared:
    """A training job ready to train: its resolved settings and where Lightning works."""

    settings: dict  # what the manifest records (canids.settings.stage_settings)
    section: Any  # the typed per-size section (AutoencoderSettings, ...)
    work_dir: Path


def train_settings(job: Job, section: OptimiserSettings, monitor: str, mode: str) -> TrainSettings:
    """The Lightning trainer's settings of a stage: its section plus the shared ``training`` ones."""
    t = job.settings.training
    return TrainSettings(
        epochs=section.epochs,
        batch_size=section.batch_size,
        learning_rate=section.learning_rate,
        weight_decay=section.weight_decay,
        patience=section.patience,
        seed=t.seed,
        optimize_batch_size=t.optimize_batch_size,
        batch_size_max_trials=t.batch_size_max_trials,
        accelerator=t.accelerator,
        monitor=monitor,
        monitor_mode=mode,
    )


def prepare(job: Job, upstream_files: list[str | None]) -> Prepared:
    """Threads, seeds and resume state of a training job; a stale resume state is discarded."""
    configure_threads(job.threads)
    settings = stage_settings(job.settings, job.stage, job.variant)
    seed_everything(job.settings.training.seed)
    work_dir = Path(job.resume_dir or tempfile.mkdtemp(prefix=f"canids-{job.stage}-")) / WORK
    key = _resume_key(settings, [f for f in upstream_files if f])
    if job.resume_dir is not None:
        _check_resume_state(job.resume_dir, key, work_dir)
    if job.resume_dir is None or not (job.resume_dir / "resume.ckpt").exists():
        shutil.rmtree(work_dir, ignore_errors=True)  # a fresh run must not pick up a stale "best"
    return Prepared(settings, job.settings.for_variant(job.stage, job.variant), work_dir)


def _resume_key(settings: dict, upstream_files: list[str]) -> str:
    """What the resume state was made from: stage settings + upstream manifest bytes."""
    blob = {"settings": settings, "upstream": [sha256_file(f) for f in upstream_files]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _check_resume_state(resume_dir: Path, key: str, work_dir: Path) -> None:
    """Keep the resume state only when it was made with the same settings and inputs.

    An interrupted attempt's state is resumed by the next attempt of the same job. If the
    settings or an upstream artifact changed since (Snakemake reruns the job for that), the
    old state is discarded: continuing it would mix two different trainings.
    """
    stamp = resume_dir / "resume_key.txt"
    ckpt = resume_dir / "resume.ckpt"
    if ckpt.exists():
        old = stamp.read_text().strip() if stamp.exists() else None
        if old == key:
            print(f"[resume] found resume state {ckpt} of an interrupted attempt (same settings and inputs)", file=sys.stderr, flush=True)
            return
        print(f"[resume] discarding resume state {resume_dir}: made with other settings or inputs", file=sys.stderr, flush=True)
        shutil.rmtree(resume_dir, ignore_errors=True)
    shutil.rmtree(work_dir, ignore_errors=True)
    atomic_write_text(stamp, key + "\n")


def teacher_manifest(job: Job) -> LoadedManifest | None:
    """The teacher's same-stage manifest of a distilled variant (verified), else None."""
    from canids.shape import VARIANTS

    if VARIANTS[job.variant].teacher is None:
        return None
    if not job.teacher:
        raise ValueError(f"{job.stage} {job.variant} for {job.dataset}: no teacher manifest given (set distillation.teacher_path or let the workflow train the teacher)")
    return load_manifest(job.teacher, stage=job.stage)


def upstream(job: Job, stage: str) -> LoadedManifest:
    """A verified upstream manifest of this job (sha256 of each of its artifacts checked)."""
    return load_manifest(job.inputs[stage], stage=stage, dataset=job.dataset)


def write_curves(path: Path, rows: list[dict]) -> None:
    """A CSV of rows (header only when there are none: a declared output always exists)."""
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["epoch"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def finish(job: Job, prepared: Prepared) -> None:
    """Publish Lightning's curve as the stage's ``training_curves`` and drop the side-path state."""
    curves = prepared.work_dir / "metrics.csv"
    if curves.exists():
        with atomic_path(job.output("training_curves")) as tmp:
            shutil.copyfile(curves, tmp)
    else:
        write_curves(job.output("training_curves"), [])
    drop_resume_state(job)
    shutil.rmtree(prepared.work_dir, ignore_errors=True)


def drop_resume_state(job: Job) -> None:
    """Remove the job's resume side path, and its parents under ``.resume`` once they are empty."""
    if job.resume_dir is None:
        return
    shutil.rmtree(job.resume_dir, ignore_errors=True)
    for parent in job.resume_dir.parents:
        if parent.name == ".resume" or not parent.is_dir() or any(parent.iterdir()):
            break
        parent.rmdir()


def publish(job: Job, *, hyperparameters: dict, upstream_manifests: list[LoadedManifest], pre: LoadedManifest, wall_time_s: float, metrics: dict) -> dict:
    """Write the stage's manifest last, pinning every artifact the stage declares (canids.shape)."""
    fp = pre.data["data_fingerprint"]
    return write_manifest(
        job.output("manifest"),
        dataset=job.dataset,
        stage=job.stage,
        variant=job.variant,
        artifacts={name: job.output(name) for name in STAGES[job.stage].artifacts},
        hyperparameters=hyperparameters,
        upstream=upstream_manifests,
        data_fingerprint={"sha256": fp["sha256"], "n_files": fp["n_files"]},
        wall_time_s=wall_time_s,
        metrics=metrics,
    )
