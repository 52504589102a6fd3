"""Resume an interrupted training attempt at the epoch after the last one it finished.

SLURM kills jobs at arbitrary instants (time limit, scancel, node failure); Snakemake retries
them. The state a retry needs lives on a side path (``<root>/.resume/...``, which Snakemake
does not delete with a failed job's outputs) and is removed once the stage succeeds.

Resume protocol (``make_trainer(..., resume_dir)`` + ``trainer.fit(ckpt_path=resume_checkpoint(resume_dir))``):

* every finished training epoch writes ``<resume_dir>/resume.ckpt`` (weights, optimizer, loop
  counters, callback states, the module's own extras such as the curriculum schedule, and the
  batch size in use) atomically: a temporary sibling, fsync, ``os.replace``
  (``canids.stages.checkpoint_io``). A kill at any instant leaves the previous complete
  checkpoint or the new one, never a truncated file. ``<resume_dir>/resume.json`` (also atomic,
  written right after) says which epoch it holds: ``epochs_done``, ``max_epochs``,
  ``global_step``, ``saved_at``. The "best" checkpoint is written the same way.
* a restarted attempt continues at the epoch after the saved one, logging
  ``resuming from <path> at epoch N/MAX (N-1 epochs done)``; every epoch logs
  ``[Module] epoch N/MAX ...``. The CSV training curve keeps the rows of the epochs already
  done and drops those of an epoch that was cut short, so each epoch appears exactly once
  (``canids.stages.curve_logger``).
* ``WallTimeGuard`` stops after an epoch when another would not fit before the job's end, and
  the process exits with ``EXIT_TIME_LIMIT`` (75) (``canids.stages.walltime``).

Test-only knob: ``CANIDS_TEST_EPOCH_SLEEP_S`` (seconds) makes every training epoch that much
slower, spread over its batches, so tests can kill a job mid-epoch (``canids.stages.callbacks``).
Never set it in production.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from canids.stages.curve_logger import ResumableCSVLogger
from canids.util import atomic_write_json

RESUME_NAME = "resume"


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


def resume_checkpoint_callback(resume_dir: Path) -> ModelCheckpoint:
    """A stock ``ModelCheckpoint`` that overwrites ``<resume_dir>/resume.ckpt`` after every training epoch."""
    return ModelCheckpoint(dirpath=resume_dir, filename=RESUME_NAME, save_last=False, save_top_k=1, every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False)


class ResumeSidecar:
    """Writes ``resume.json`` right after ``resume.ckpt`` is in place (``AtomicCheckpointIO(after_save=...)``).

    Other checkpoints (best, the tuner's) pass through untouched.
    """

    def __init__(self, resume_dir: Path) -> None:
        self.checkpoint_path = (Path(resume_dir) / f"{RESUME_NAME}.ckpt").resolve()

    def __call__(self, checkpoint: dict, path: Path) -> None:
        if Path(path).resolve() != self.checkpoint_path:
            return
        saved = checkpoint.get(ResumeState.KEY) or {}
        atomic_write_json(
            self.checkpoint_path.with_suffix(".json"),
            {
                "checkpoint": self.checkpoint_path.name,
                "epochs_done": int(saved.get("epochs_done", int(checkpoint["epoch"]) + 1)),
                "max_epochs": saved.get("max_epochs"),
                "global_step": int(checkpoint["global_step"]),
                "saved_at": time.time(),
            },
        )


class ResumeState(Callback):
    """What a resumed attempt needs beyond Lightning's own state, and the log line saying it resumed.

    Stores the batch size in use (it may come from the tuner, which a resumed attempt skips) and
    restores it onto the module; trims the CSV curve to the epochs the checkpoint holds.
    """

    KEY = "canids_resume"

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[self.KEY] = {"batch_size": getattr(pl_module, "batch_size", None), "epochs_done": trainer.current_epoch + 1, "max_epochs": trainer.max_epochs}

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
