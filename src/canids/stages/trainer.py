"""The Lightning trainer every training stage uses, built once with the project's training hygiene.

``make_trainer`` wires what each stage would otherwise repeat: the best checkpoint by a
validation metric (never the last epoch, ``restore_best``), early stopping, a hard stop on a
NaN/inf loss, a one-line-per-epoch log, per-epoch resume state on a side path
(``canids.stages.resume``), a clean stop before the SLURM wall time (``canids.stages.walltime``),
checkpoint files written atomically (``canids.stages.checkpoint_io``) and a CSV training curve
that survives a resume (``canids.stages.curve_logger``). Also here: the devices, threads and
seeds a stage runs with, and the batch-size tuner.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from canids.stages.callbacks import EpochLog, FiniteLossGuard, slow_epochs_for_tests
from canids.stages.checkpoint_io import AtomicCheckpointIO
from canids.stages.curve_logger import ResumableCSVLogger
from canids.stages.resume import ResumeSidecar, ResumeState, resume_checkpoint_callback
from canids.stages.walltime import WallTimeGuard

log = logging.getLogger("canids")

#: Seeds ``seed_everything`` accepts: numpy's legacy seeding takes unsigned 32-bit integers.
SEED_MIN, SEED_MAX = 0, 2**32 - 1


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


def logs_this_step(module: L.LightningModule, batch_idx: int) -> bool:
    """Whether ``training_step`` should ``self.log`` its loss at this batch.

    A step's ``self.log`` costs Lightning about a millisecond (5 % of a 64-window step), and the
    trainer writes the step metrics only every ``log_every_n_steps`` optimizer steps (or when
    stopping); ``EpochLog`` prints the last value of an epoch. Logging on those batches only
    writes the same curve rows and epoch lines as logging on every batch.
    """
    trainer = module.trainer
    last = isinstance(trainer.num_training_batches, int) and batch_idx == trainer.num_training_batches - 1
    return last or trainer.should_stop or (trainer.global_step + 1) % max(1, trainer.log_every_n_steps) == 0


def adamw(parameters, settings: TrainSettings) -> torch.optim.AdamW:
    """The optimiser of the VGAE and GAT stages: AdamW at the stage's learning rate and weight decay.

    ``fused``: one kernel updates every parameter per step, instead of a Python loop over the
    parameters (the CPU default, 0.58 ms a step for the teacher VGAE's 96 k weights) or a handful of
    multi-tensor operations (``foreach``, 0.42 ms; fused 0.13 ms, 2 threads). It rounds differently
    from the loop (6e-8 apart after 20 steps of a small model); its optimiser state is the loop's,
    so checkpoints written with either resume with either (a resumed run keeps the implementation
    its checkpoint's parameter groups name).
    """
    return torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True)


def seed_everything(seed: int) -> int:
    """Seed Python's ``random``, numpy and torch (CPU and CUDA) with ``seed`` (Lightning's ``seed_everything``).

    ``seed`` must lie in 0 .. 4294967295 (``SEED_MIN`` .. ``SEED_MAX``, the unsigned 32-bit
    range numpy accepts); anything else raises ``ValueError``. Returns the seed.
    """
    return L.seed_everything(int(seed), workers=False, verbose=False)


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


def configure_threads(threads: int | None = None) -> int:
    """Use the CPUs this job was given rather than every core of the node.

    ``threads`` (the job's own thread count) when given, else ``SLURM_CPUS_PER_TASK``, else
    ``CANIDS_THREADS``, else every core. Returns the number of torch threads set.
    """
    n = int(threads or os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("CANIDS_THREADS") or (os.cpu_count() or 1))
    torch.set_num_threads(max(1, n))
    return n


def make_trainer(settings: TrainSettings, work_dir: Path, resume_dir: Path | None, extra_callbacks: list | None = None, reload_every_epoch: bool = False):
    """Build a Lightning Trainer with the project's callbacks and a CSV logger under ``work_dir``.

    With ``resume_dir``, every finished epoch saves the resume checkpoint there (atomically);
    pass ``ckpt_path=resume_checkpoint(resume_dir)`` to ``fit`` to continue an interrupted attempt.
    Returns the trainer and its best-checkpoint callback (for ``restore_best``).
    """
    quiet_lightning()

    work_dir.mkdir(parents=True, exist_ok=True)
    best = ModelCheckpoint(dirpath=work_dir / "best", filename="best", monitor=settings.monitor, mode=settings.monitor_mode, save_top_k=1, save_last=False)
    callbacks: list[Any] = [best, EarlyStopping(monitor=settings.monitor, mode=settings.monitor_mode, patience=settings.patience), EpochLog(), FiniteLossGuard(), WallTimeGuard(), ResumeState()]
    checkpoint_io = AtomicCheckpointIO()
    if resume_dir is not None:
        callbacks.append(resume_checkpoint_callback(resume_dir))
        checkpoint_io = AtomicCheckpointIO(after_save=ResumeSidecar(resume_dir))
    slow = slow_epochs_for_tests()
    if slow is not None:
        callbacks.append(slow)
    callbacks += extra_callbacks or []
    trainer = L.Trainer(
        max_epochs=settings.epochs,
        accelerator=pick_accelerator(settings.accelerator),
        devices=1,
        # Everything Lightning writes on its own (e.g. the batch-size tuner's temporary
        # checkpoint) stays in this stage's directory, never in the shared working directory.
        default_root_dir=str(work_dir),
        # Written at every log call: the rows of finished epochs are on disk before the resume
        # checkpoint that follows them; ResumeState drops the rows of an epoch cut short.
        logger=ResumableCSVLogger(work_dir),
        callbacks=callbacks,
        # Our own wall-time handling, not Lightning's SLURM requeue; every checkpoint file atomic.
        plugins=[LightningEnvironment(), checkpoint_io],
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
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*srun.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")
    # Resume and best-checkpoint directories hold an earlier attempt's files on purpose.
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*number of training batches .* smaller than the logging interval.*")
    # A distilled student's module holds its frozen teacher in eval mode on purpose (a submodule,
    # so that it moves to the student's device): Lightning warns about it at every fit.
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")
    # checkpoint_connector: "`weights_only` was not set" on every full (resume) checkpoint it writes
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.rank_zero", "lightning.pytorch.trainer.connectors.checkpoint_connector"):
        logging.getLogger(name).setLevel(logging.WARNING)


def restore_best(module, best: ModelCheckpoint) -> int | None:
    """Load the best checkpoint's ``model.*`` weights into ``module.model``; return its 1-based epoch.

    The kept model is the best by the monitored validation metric, not the last epoch. The file
    is read with ``weights_only=True``: tensors and plain containers only, no pickled code.
    """
    if not best.best_model_path:
        return None
    state = torch.load(best.best_model_path, weights_only=True, map_location="cpu")
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
