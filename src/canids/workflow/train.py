"""Entry points of the three training stages, called by the thin scripts in workflow/scripts.

Each one: verifies every upstream manifest (sha256 of each artifact) before any work,
trains, writes ``model.ckpt`` atomically, then writes the manifest last. Resume state lives
on a side path under ``<root>/.resume/`` (Snakemake deletes declared outputs of a failed
job; the side path survives so the next attempt continues) and is removed on success.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from canids.graphs.graphset import load_graphsets
from canids.stages.autoencoder import score_windows, train_autoencoder
from canids.stages.checkpoints import load_dqn, load_gat, load_vgae, parameter_count, save_checkpoint
from canids.stages.common import TrainSettings, configure_threads, seed_everything
from canids.stages.curriculum import CurriculumSettings, train_curriculum
from canids.models.dqn import DQNConfig
from canids.stages.fusion import STATE_FEATURES, FusionSettings, VGAECalibration, detector_outputs, train_fusion
from canids.workflow.manifest import LoadedManifest, load_manifest, write_manifest
from canids.workflow.settings import stage_settings
from canids.util import atomic_write_text, sha256_file


def _train_settings(s: dict, monitor: str, mode: str) -> TrainSettings:
    return TrainSettings(
        epochs=int(s["epochs"]),
        batch_size=int(s["batch_size"]),
        learning_rate=float(s["learning_rate"]),
        weight_decay=float(s.get("weight_decay", 0.0)),
        patience=int(s.get("patience", 5)),
        seed=int(s["seed"]),
        optimize_batch_size=bool(s.get("optimize_batch_size", True)),
        batch_size_max_trials=int(s.get("batch_size_max_trials", 2)),
        accelerator=str(s.get("accelerator", "auto")),
        monitor=monitor,
        monitor_mode=mode,
    )


def _prepare(stage: str, variant: str, config: dict, out_dir: Path, resume_dir: Path | None, upstream_files: list | None = None) -> dict:
    configure_threads()
    settings = stage_settings(config, stage, variant)
    seed_everything(int(settings["seed"]))
    lightning_dir = out_dir / "lightning"
    if resume_dir is not None:
        _check_resume_state(Path(resume_dir), _resume_key(stage, variant, settings, upstream_files or []), lightning_dir)
    if resume_dir is None or not (resume_dir / "resume.ckpt").exists():
        shutil.rmtree(lightning_dir, ignore_errors=True)  # a fresh run must not pick up a stale "best"
    return settings


def _resume_key(stage: str, variant: str, settings: dict, upstream_files: list) -> str:
    """What the resume state was made from: stage settings + upstream manifest bytes."""
    blob = {"stage": stage, "variant": variant, "settings": settings, "upstream": [sha256_file(f) for f in upstream_files if f]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _check_resume_state(resume_dir: Path, key: str, lightning_dir: Path) -> None:
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
        shutil.rmtree(lightning_dir, ignore_errors=True)
    atomic_write_text(stamp, key + "\n")


def _finish(resume_dir: Path | None, out_dir: Path) -> None:
    curves = out_dir / "lightning" / "metrics.csv"
    if curves.exists():
        shutil.copyfile(curves, out_dir / "training_curves.csv")
    if resume_dir is not None:
        shutil.rmtree(resume_dir, ignore_errors=True)


def _teacher(variant: str, teacher_manifest: str | None, stage: str, dataset: str) -> LoadedManifest | None:
    if variant != "student_kd":
        return None
    if not teacher_manifest:
        raise ValueError(f"{stage} student_kd for {dataset}: no teacher manifest given (set distillation.teacher_path or let the DAG train the teacher)")
    return load_manifest(teacher_manifest, stage=stage)


def run_autoencoder(dataset: str, variant: str, config: dict, preprocess_manifest: str, ckpt_out: Path, manifest_out: Path, resume_dir: Path | None = None, teacher_manifest: str | None = None) -> dict:
    t0 = time.perf_counter()
    out_dir = Path(manifest_out).parent
    pre = load_manifest(preprocess_manifest, stage="preprocess", dataset=dataset)
    teacher_m = _teacher(variant, teacher_manifest, "autoencoder", dataset)
    s = _prepare("autoencoder", variant, config, out_dir, resume_dir, [preprocess_manifest, teacher_manifest])
    sets, extra = load_graphsets(pre.artifact("train_graphs"))
    vocab_size = len(extra["vocab"]["can_ids"]) + 1
    teacher = load_vgae(teacher_m.artifact("checkpoint"))[0] if teacher_m else None
    kd_alpha = s["distillation"]["alpha"] if teacher is not None else 0.0
    result = train_autoencoder(sets["train"], sets["val"], vocab_size, s.get("model", {}), _train_settings(s, "val_score", "min"), out_dir / "lightning", resume_dir, teacher, kd_alpha)
    calibration = VGAECalibration.fit(result.threshold, result.val_normal_scores)
    save_checkpoint(ckpt_out, "vgae", result.model, threshold=result.threshold, calibration={"threshold": calibration.threshold, "log_scale": calibration.log_scale}, vocab=extra["vocab"], window_size=extra["window_size"])
    _finish(resume_dir, out_dir)
    s.update(batch_size_used=result.batch_size)
    metrics = {**result.metrics, "threshold": result.threshold, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "parameter_count": parameter_count(result.model), "batch_size": result.batch_size}
    upstream = [pre] + ([teacher_m] if teacher_m else [])
    return write_manifest(manifest_out, dataset=dataset, stage="autoencoder", variant=variant, artifacts={"checkpoint": ckpt_out}, hyperparameters=s, upstream=upstream, data_fingerprint=_data_fp(pre), wall_time_s=time.perf_counter() - t0, metrics=metrics)


def run_curriculum(dataset: str, variant: str, config: dict, preprocess_manifest: str, autoencoder_manifest: str, ckpt_out: Path, manifest_out: Path, resume_dir: Path | None = None, teacher_manifest: str | None = None) -> dict:
    t0 = time.perf_counter()
    out_dir = Path(manifest_out).parent
    pre = load_manifest(preprocess_manifest, stage="preprocess", dataset=dataset)
    ae = load_manifest(autoencoder_manifest, stage="autoencoder", dataset=dataset)
    teacher_m = _teacher(variant, teacher_manifest, "curriculum", dataset)
    s = _prepare("curriculum", variant, config, out_dir, resume_dir, [preprocess_manifest, autoencoder_manifest, teacher_manifest])
    sets, extra = load_graphsets(pre.artifact("train_graphs"))
    vgae, _ = load_vgae(ae.artifact("checkpoint"))
    train_scores = score_windows(vgae, sets["train"])
    teacher = load_gat(teacher_m.artifact("checkpoint"))[0] if teacher_m else None
    dist = s.get("distillation", {})
    cur = CurriculumSettings(**s.get("curriculum", {}))
    result = train_curriculum(sets["train"], sets["val"], train_scores, len(extra["vocab"]["can_ids"]) + 1, s.get("model", {}), _train_settings(s, "val_f1", "max"), cur, out_dir / "lightning", resume_dir, teacher, dist.get("alpha", 0.0) if teacher else 0.0, dist.get("temperature", 4.0))
    save_checkpoint(ckpt_out, "gat", result.model, vocab=extra["vocab"], window_size=extra["window_size"])
    _write_csv(out_dir / "curriculum_schedule.csv", result.schedule)
    _finish(resume_dir, out_dir)
    s.update(batch_size_used=result.batch_size)
    metrics = {**result.metrics, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "parameter_count": parameter_count(result.model), "batch_size": result.batch_size, "schedule": result.schedule}
    upstream = [pre, ae] + ([teacher_m] if teacher_m else [])
    return write_manifest(manifest_out, dataset=dataset, stage="curriculum", variant=variant, artifacts={"checkpoint": ckpt_out}, hyperparameters=s, upstream=upstream, data_fingerprint=_data_fp(pre), wall_time_s=time.perf_counter() - t0, metrics=metrics)


def run_fusion(dataset: str, variant: str, config: dict, preprocess_manifest: str, autoencoder_manifest: str, curriculum_manifest: str, ckpt_out: Path, manifest_out: Path, teacher_manifest: str | None = None) -> dict:
    t0 = time.perf_counter()
    out_dir = Path(manifest_out).parent
    pre = load_manifest(preprocess_manifest, stage="preprocess", dataset=dataset)
    ae = load_manifest(autoencoder_manifest, stage="autoencoder", dataset=dataset)
    gat_m = load_manifest(curriculum_manifest, stage="curriculum", dataset=dataset)
    teacher_m = _teacher(variant, teacher_manifest, "fusion", dataset)
    s = _prepare("fusion", variant, config, out_dir, None)
    sets, _ = load_graphsets(pre.artifact("train_graphs"))
    vgae, vgae_payload = load_vgae(ae.artifact("checkpoint"))
    gat, _ = load_gat(gat_m.artifact("checkpoint"))
    calibration = VGAECalibration(**vgae_payload["calibration"])
    val = sets["val"]
    outputs = detector_outputs(vgae, calibration, gat, val)
    model_cfg = DQNConfig(state_dim=len(STATE_FEATURES), **s.get("model", {}))
    fs = FusionSettings(**{k: v for k, v in s.items() if k in FusionSettings.__dataclass_fields__})
    teacher = load_dqn(teacher_m.artifact("checkpoint"))[0] if teacher_m else None
    if teacher is not None:
        fs.kd_alpha = s["distillation"]["alpha"]
    result = train_fusion(outputs, val, model_cfg, fs, teacher, calibration)
    save_checkpoint(ckpt_out, "dqn", result.q_net, logreg=result.logreg, state_features=STATE_FEATURES, calibration=vgae_payload["calibration"])
    _write_csv(out_dir / "training_curves.csv", result.curve)
    metrics = {**result.metrics, "parameter_count": parameter_count(result.q_net)}
    if not result.metrics["not_worse_than_best_single"]:
        print(f"[fusion] WARNING: fusion val F1 {result.metrics['val_f1']:.4f} is below the best single model (gat {result.metrics['val_f1_gat']:.4f}, vgae {result.metrics['val_f1_vgae']:.4f})", file=sys.stderr)
    upstream = [pre, ae, gat_m] + ([teacher_m] if teacher_m else [])
    return write_manifest(manifest_out, dataset=dataset, stage="fusion", variant=variant, artifacts={"checkpoint": ckpt_out}, hyperparameters=s, upstream=upstream, data_fingerprint=_data_fp(pre), wall_time_s=time.perf_counter() - t0, metrics=metrics)


def _data_fp(pre: LoadedManifest) -> dict:
    fp = pre.data["data_fingerprint"]
    return {"sha256": fp["sha256"], "n_files": fp["n_files"]}


def _write_csv(path: Path, rows: list[dict]) -> None:
    from canids.util import atomic_path

    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)

