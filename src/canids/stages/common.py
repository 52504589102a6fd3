"""What every training stage shares: devices, seeds, data loaders, the Lightning trainer.

Training hygiene lives here once instead of in each stage: the best checkpoint by a
validation metric (never the last epoch), early stopping, a hard stop on NaN/inf loss,
per-epoch resume state on a side path, a clean stop before the SLURM wall time, and CSV
training curves.

Resume protocol (``make_trainer(..., resume_dir)`` + ``trainer.fit(ckpt_path=resume_checkpoint(resume_dir))``):

* every finished training epoch writes ``<resume_dir>/resume.ckpt`` (weights, optimizer, loop
  counters, callback states, the module's own extras such as the curriculum schedule, and the
  batch size in use) atomically: a temporary sibling, fsync, ``os.replace``. A kill at any
  instant leaves the previous complete checkpoint or the new one, never a truncated file.
  ``<resume_dir>/resume.json`` (also atomic, written right after) says which epoch it holds.
  The "best" checkpoint is written the same way.
* a restarted attempt continues at the epoch after the saved one, logging
  ``resuming from <path> at epoch N/MAX (N-1 epochs done)``; every epoch logs
  ``[Module] epoch N/MAX ...``. The CSV training curve keeps the rows of the epochs already
  done and drops those of an epoch that was cut short, so each epoch appears exactly once.
* ``WallTimeGuard`` stops after an epoch when another would not fit before the job's end
  (``SLURM_JOB_END_TIME``, else ``squeue``'s time left for ``SLURM_JOB_ID``, else
  ``CANIDS_JOB_END_TIME``) and the process exits with ``EXIT_TIME_LIMIT`` (75).

Test-only knob: ``CANIDS_TEST_EPOCH_SLEEP_S`` (seconds) makes every training epoch that much
slower, spread over its batches, so tests can kill a job mid-epoch. Never set it in production.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from canids.graphs.graphset import GraphSet

log = logging.getLogger("canids")

#: Exit status of a trainer that stopped itself before the SLURM time limit; resume state is saved.
EXIT_TIME_LIMIT = 75


class NonFiniteLossError(RuntimeError):
    """Raised when a loss becomes NaN or infinite: continuing would only waste the allocation."""


class TimeLimitReached(SystemExit):
    """Raised to end the process cleanly before ``SLURM_JOB_END_TIME``; resume state is on disk."""

    def __init__(self) -> None:
        super().__init__(EXIT_TIME_LIMIT)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_accelerator(requested: str = "auto") -> str:
    """``cuda`` when a GPU is usable, else ``cpu``.

    On the test cluster SLURM hands out fake GPUs: CUDA_VISIBLE_DEVICES is set but torch
    finds no device, so the decision must come from torch, not from the environment.
    """
    if requested in ("cpu", "cuda"):
        if requested == "cuda" and not torch.cuda.is_available():
            log.warning("accelerator 'cuda' requested but torch finds no GPU; using CPU")
            return "cpu"
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def configure_threads() -> int:
    """Use the CPUs this job was given (SLURM_CPUS_PER_TASK) rather than every core of the node."""
    n = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("CANIDS_THREADS") or (os.cpu_count() or 1))
    torch.set_num_threads(max(1, n))
    return n


class _IndexDataset(Dataset):
    def __init__(self, index: np.ndarray) -> None:
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> int:
        return int(self.index[i])


def window_loader(graphs: GraphSet, index: np.ndarray | None = None, batch_size: int = 64, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader of PyG batches: the dataset yields window indices, the collate gathers them."""
    index = np.arange(len(graphs)) if index is None else index
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(_IndexDataset(index), batch_size=max(1, int(batch_size)), shuffle=shuffle, collate_fn=graphs.batch, generator=generator, num_workers=0)


@dataclass
class TrainSettings:
    """Resolved training settings of one stage (what goes into the manifest)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    seed: int
    optimize_batch_size: bool
    batch_size_max_trials: int
    accelerator: str
    monitor: str
    monitor_mode: str


def make_trainer(settings: TrainSettings, work_dir: Path, resume_dir: Path | None, extra_callbacks: list | None = None, reload_every_epoch: bool = False):
    """Build a Lightning Trainer with the project's callbacks and a CSV logger under ``work_dir``.

    With ``resume_dir``, every finished epoch saves the resume checkpoint there (atomically);
    pass ``ckpt_path=resume_checkpoint(resume_dir)`` to ``fit`` to continue an interrupted attempt.
    """
    import lightning as L
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.callbacks import EarlyStopping

    quiet_lightning()

    work_dir.mkdir(parents=True, exist_ok=True)
    best = AtomicModelCheckpoint(dirpath=work_dir / "best", filename="best", monitor=settings.monitor, mode=settings.monitor_mode, save_top_k=1, save_last=False)
    callbacks: list[Any] = [best, EarlyStopping(monitor=settings.monitor, mode=settings.monitor_mode, patience=settings.patience), EpochLog(), FiniteLossGuard(), WallTimeGuard(), ResumeState()]
    if resume_dir is not None:
        callbacks.append(AtomicModelCheckpoint(dirpath=resume_dir, filename=RESUME_NAME, save_last=False, save_top_k=1, every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False, sidecar=True))
    sleep_s = float(os.environ.get(TEST_EPOCH_SLEEP_ENV) or 0)
    if sleep_s > 0:
        callbacks.append(_TestEpochSleep(sleep_s))
    callbacks += extra_callbacks or []
    trainer = L.Trainer(
        max_epochs=settings.epochs,
        accelerator=pick_accelerator(settings.accelerator),
        devices=1,
        # Everything Lightning writes on its own (e.g. the batch-size tuner's temporary
        # checkpoint) stays in this stage's directory, never in the shared working directory.
        default_root_dir=str(work_dir),
        # Flushed at every log call: the rows of finished epochs are on disk before the resume
        # checkpoint that follows them; ResumeState drops the rows of an epoch cut short.
        logger=ResumableCSVLogger(save_dir=str(work_dir), name="", version="", flush_logs_every_n_steps=1),
        callbacks=callbacks,
        plugins=[LightningEnvironment()],  # our own wall-time handling, not Lightning's SLURM requeue
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=10,
        reload_dataloaders_every_n_epochs=1 if reload_every_epoch else 0,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    return trainer, best


def quiet_lightning() -> None:
    """Drop Lightning's advertising and deprecation chatter so job logs show training only."""
    import warnings

    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*srun.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")
    # Resume and best-checkpoint directories hold an earlier attempt's files on purpose.
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*number of training batches .* smaller than the logging interval.*")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


RESUME_NAME = "resume"
#: Test-only: seconds of sleep added to every training epoch (see the module docstring).
TEST_EPOCH_SLEEP_ENV = "CANIDS_TEST_EPOCH_SLEEP_S"


def resume_checkpoint(resume_dir: Path | None) -> str | None:
    """The side-path checkpoint of an interrupted attempt, if one exists."""
    if resume_dir is None:
        return None
    path = Path(resume_dir) / f"{RESUME_NAME}.ckpt"
    return str(path) if path.exists() else None


def resume_info(resume_dir: Path | None) -> dict | None:
    """What ``<resume_dir>/resume.json`` says about the saved state (``epochs_done``, ...), or None."""
    if resume_dir is None:
        return None
    try:
        return json.loads((Path(resume_dir) / f"{RESUME_NAME}.json").read_text())
    except (OSError, ValueError):
        return None


def restore_best(module, best) -> int | None:
    """Load the best checkpoint's ``model.*`` weights into ``module.model``; return its 1-based epoch.

    The kept model is the best by the monitored validation metric, not the last epoch.
    """
    if not best.best_model_path:
        return None
    state = torch.load(best.best_model_path, weights_only=False, map_location="cpu")
    module.model.load_state_dict({k[len("model.") :]: v for k, v in state["state_dict"].items() if k.startswith("model.")})
    return int(state["epoch"]) + 1


def tune_batch_size(trainer_factory, module, settings: TrainSettings) -> int:
    """Let Lightning's Tuner scale the batch size from ``settings.batch_size`` (power mode).

    The tuner's choice is used as is: the replaced pipeline multiplied it by a safety factor,
    twice by accident. On CPU nothing runs out of memory, so ``batch_size_max_trials`` bounds
    the search.
    """
    if not settings.optimize_batch_size:
        return settings.batch_size
    from lightning.pytorch.tuner import Tuner

    trainer, _ = trainer_factory()
    module.batch_size = settings.batch_size
    found = Tuner(trainer).scale_batch_size(module, mode="power", init_val=settings.batch_size, max_trials=settings.batch_size_max_trials, steps_per_trial=2)
    return int(found or settings.batch_size)


def _lightning_callback_base():
    from lightning.pytorch.callbacks import Callback

    return Callback


class EpochLog(_lightning_callback_base()):
    """One log line per epoch (a progress bar full of carriage returns is unreadable in SLURM logs)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
        text = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        elapsed = time.perf_counter() - getattr(self, "_t0", time.perf_counter())
        print(f"[{pl_module.__class__.__name__}] epoch {trainer.current_epoch + 1}/{trainer.max_epochs} {elapsed:.1f}s {text}", file=sys.stderr, flush=True)


class ResumeState(_lightning_callback_base()):
    """What a resumed attempt needs beyond Lightning's own state, and the log line saying it resumed.

    Stores the batch size in use (it may come from the tuner, which a resumed attempt skips) and
    restores it onto the module; trims the CSV curve to the epochs the checkpoint holds.
    """

    KEY = "canids_resume"

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[self.KEY] = {"batch_size": getattr(pl_module, "batch_size", None), "epochs_done": trainer.current_epoch + 1}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        saved = checkpoint.get(self.KEY) or {}
        if saved.get("batch_size") and hasattr(pl_module, "batch_size"):
            pl_module.batch_size = int(saved["batch_size"])

    def on_train_start(self, trainer, pl_module) -> None:
        start = int(trainer.current_epoch)  # after a restore: the first epoch this attempt runs (0-based)
        for logger in trainer.loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.keep_epochs_before(start)
        if trainer.ckpt_path:
            print(f"[{pl_module.__class__.__name__}] resuming from {trainer.ckpt_path} at epoch {start + 1}/{trainer.max_epochs} ({start} epochs done, global step {trainer.global_step})", file=sys.stderr, flush=True)


class _TestEpochSleep(_lightning_callback_base()):
    """Test-only (``CANIDS_TEST_EPOCH_SLEEP_S``): slow every epoch down, spread over its batches."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = trainer.num_training_batches
        n = int(n) if isinstance(n, (int, float)) and math.isfinite(n) and n > 0 else 1
        time.sleep(self.seconds / n)


class FiniteLossGuard(_lightning_callback_base()):
    """Stop the run with a clear error at the first NaN/inf training loss."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise NonFiniteLossError(f"{pl_module.__class__.__name__}: loss became {float(loss)} at epoch {trainer.current_epoch + 1}, batch {batch_idx}; lower learning_rate or check the input graphs")


def job_end_time() -> tuple[float | None, str]:
    """When this job will be killed (Unix time) and where that came from.

    ``SLURM_JOB_END_TIME`` (SLURM >= 23.02), else the time left that ``squeue`` reports for
    ``SLURM_JOB_ID`` (older SLURM sets no end-time variable), else ``CANIDS_JOB_END_TIME``
    (any other scheduler, or tests); (None, "none") when nothing says.
    """
    end = (os.environ.get("SLURM_JOB_END_TIME") or "").strip()
    if end.isdigit() and int(end) > 0:
        return float(end), "SLURM_JOB_END_TIME"
    job = (os.environ.get("SLURM_JOB_ID") or "").strip()
    if job:
        left = _squeue_time_left(job)
        if left is not None:
            return time.time() + left, "squeue"
    end = (os.environ.get("CANIDS_JOB_END_TIME") or "").strip()
    try:
        return (float(end), "CANIDS_JOB_END_TIME") if end else (None, "none")
    except ValueError:
        return None, "none"


def _squeue_time_left(job_id: str) -> float | None:
    """Seconds left of a job per ``squeue -o %L`` ([days-][hours:]minutes:seconds); None if unknown."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_slurm_duration(out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "")


def parse_slurm_duration(text: str) -> float | None:
    """``1-02:03:04`` / ``02:03:04`` / ``03:04`` / ``4`` -> seconds; None for UNLIMITED, NOT_SET, ''."""
    text = text.strip()
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        if not d.isdigit():
            return None
        days = int(d)
    parts = text.split(":")
    if not parts or not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    return float(days * 86400 + seconds)


class WallTimeGuard(_lightning_callback_base()):
    """End the job before its wall time when another epoch would not fit.

    Checked at the end of every training epoch. The resume checkpoint of that epoch is saved
    right after (checkpoint callbacks run last), then ``on_train_end`` raises
    ``TimeLimitReached`` (``SystemExit(75)``): the process exits 75 and the next attempt resumes.
    ``CANIDS_WALLTIME_MARGIN_S`` (default 30 s) is kept free for saving and exiting.
    """

    def __init__(self, margin_s: float = 30.0) -> None:
        self.margin_s = float(os.environ.get("CANIDS_WALLTIME_MARGIN_S") or margin_s)
        self.end_time, self.end_source = job_end_time()
        self._epoch_start = time.time()
        self._longest = 0.0
        self._time_limited = False

    def on_train_start(self, trainer, pl_module) -> None:
        if self.end_time is not None:
            print(f"[{pl_module.__class__.__name__}] job ends in {self.end_time - time.time():.0f}s (from {self.end_source}); stopping early with a margin of {self.margin_s:.0f}s", file=sys.stderr, flush=True)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._longest = max(self._longest, time.time() - self._epoch_start)
        if self.end_time is None:
            return
        remaining = self.end_time - time.time()
        if remaining < 1.5 * self._longest + self.margin_s and trainer.current_epoch + 1 < trainer.max_epochs:
            print(f"[{pl_module.__class__.__name__}] stopping before the job's time limit after epoch {trainer.current_epoch + 1}/{trainer.max_epochs} ({remaining:.0f}s left, epochs take up to {self._longest:.0f}s); resume state saved; exiting with {EXIT_TIME_LIMIT}", file=sys.stderr, flush=True)
            trainer.should_stop = True
            trainer.strategy.barrier()
            self._time_limited = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self._time_limited:
            raise TimeLimitReached()


def _checkpoint_base():
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint


class AtomicModelCheckpoint(_checkpoint_base()):
    """``ModelCheckpoint`` whose files appear complete or not at all.

    Lightning writes the file in place, so a kill during the write leaves a truncated
    checkpoint that the next attempt fails to load. Here the checkpoint goes to a temporary
    sibling, is fsynced, and replaces the target with ``os.replace``. With ``sidecar=True`` a
    ``<name>.json`` (epochs done, global step, time) is written next to it, also atomically.
    """

    def __init__(self, *args, sidecar: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sidecar = sidecar

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        from weakref import proxy

        from canids.util import atomic_path, atomic_write_json

        if trainer.is_global_zero:
            with atomic_path(filepath) as tmp:
                trainer.save_checkpoint(str(tmp), self.save_weights_only)
        else:  # not used here (one device), kept for completeness: every rank must enter save_checkpoint
            trainer.save_checkpoint(filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            if self.sidecar:
                atomic_write_json(Path(filepath).with_suffix(".json"), {"checkpoint": os.path.basename(filepath), "epochs_done": trainer.current_epoch + 1, "max_epochs": trainer.max_epochs, "global_step": trainer.global_step, "saved_at": time.time()})
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


def _csv_logger_classes():
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter
    from lightning.pytorch.loggers.logger import rank_zero_experiment

    class KeepingExperimentWriter(ExperimentWriter):
        """Lightning's CSV writer deletes an existing metrics.csv on start; a resumed attempt keeps it."""

        def _check_log_dir_exists(self) -> None:
            self.metrics_keys = _csv_header(Path(self.metrics_file_path))

    class ResumableCSVLogger(CSVLogger):
        """CSVLogger whose curve survives a resume: rows of finished epochs kept, each epoch once."""

        @property
        @rank_zero_experiment
        def experiment(self):
            if self._experiment is not None:
                return self._experiment
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = KeepingExperimentWriter(log_dir=self.log_dir)
            return self._experiment

        def keep_epochs_before(self, epoch: int) -> None:
            """Drop rows of epochs >= ``epoch`` (0-based; 0 = start afresh): an epoch cut short by a kill."""
            writer = self.experiment
            writer.save()  # nothing should be pending; keep it in the file before trimming
            path = Path(writer.metrics_file_path)
            _trim_metrics_csv(path, epoch)
            writer.metrics_keys = _csv_header(path)

    return ResumableCSVLogger


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="") as handle:
            return list(next(csv.reader(handle), []))
    except OSError:
        return []


def _trim_metrics_csv(path: Path, keep_before: int) -> None:
    """Rewrite ``path`` (atomically) with only the rows whose ``epoch`` < ``keep_before``.

    Rows that do not parse (a line cut by a kill mid-write) are dropped too.
    """
    from canids.util import atomic_path

    if not path.exists():
        return
    if keep_before <= 0:
        path.unlink()
        return
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = []
        for row in reader:
            try:
                epoch = int(float(row.get("epoch") or ""))
            except ValueError:
                continue
            if None in row or any(v is None for v in row.values()):
                continue  # short or overlong line
            if epoch < keep_before:
                rows.append(row)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


ResumableCSVLogger = _csv_logger_classes()


def finite_or_raise(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{what} is {value}")
    return value
