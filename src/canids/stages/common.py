"""What every training stage shares: devices, seeds, data loaders, the Lightning trainer.

Training hygiene lives here once instead of in each stage: the best checkpoint by a
validation metric (never the last epoch), early stopping, a hard stop on NaN/inf loss,
per-epoch resume state on a side path, a clean stop before the SLURM wall time, and CSV
training curves.
"""

from __future__ import annotations

import logging
import math
import os
import random
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
    """Build a Lightning Trainer with the project's callbacks and a CSV logger under ``work_dir``."""
    import lightning as L
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    quiet_lightning()

    work_dir.mkdir(parents=True, exist_ok=True)
    best = ModelCheckpoint(dirpath=work_dir / "best", filename="best", monitor=settings.monitor, mode=settings.monitor_mode, save_top_k=1, save_last=False)
    callbacks: list[Any] = [best, EarlyStopping(monitor=settings.monitor, mode=settings.monitor_mode, patience=settings.patience), EpochLog(), FiniteLossGuard(), WallTimeGuard()]
    if resume_dir is not None:
        callbacks.append(ModelCheckpoint(dirpath=resume_dir, filename="resume", save_last=False, save_top_k=1, every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False))
    callbacks += extra_callbacks or []
    trainer = L.Trainer(
        max_epochs=settings.epochs,
        accelerator=pick_accelerator(settings.accelerator),
        devices=1,
        logger=CSVLogger(save_dir=str(work_dir), name="", version=""),
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
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def resume_checkpoint(resume_dir: Path | None) -> str | None:
    """The side-path checkpoint of an interrupted attempt, if one exists."""
    if resume_dir is None:
        return None
    path = resume_dir / "resume.ckpt"
    return str(path) if path.exists() else None


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


class FiniteLossGuard(_lightning_callback_base()):
    """Stop the run with a clear error at the first NaN/inf training loss."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise NonFiniteLossError(f"{pl_module.__class__.__name__}: loss became {float(loss)} at epoch {trainer.current_epoch + 1}, batch {batch_idx}; lower learning_rate or check the input graphs")


class WallTimeGuard(_lightning_callback_base()):
    """End the job before SLURM's wall time when another epoch would not fit.

    The resume checkpoint of the finished epoch is already on disk (it is saved at train
    epoch end, before this runs at validation end), so the next attempt continues from it.
    """

    def __init__(self, margin_s: float = 30.0) -> None:
        self.margin_s = float(os.environ.get("CANIDS_WALLTIME_MARGIN_S", margin_s))
        end = os.environ.get("SLURM_JOB_END_TIME")
        self.end_time = float(end) if end and end.isdigit() else None
        self._epoch_start = time.time()
        self._longest = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._longest = max(self._longest, time.time() - self._epoch_start)
        if self.end_time is None:
            return
        remaining = self.end_time - time.time()
        if remaining < 1.5 * self._longest + self.margin_s and trainer.current_epoch + 1 < trainer.max_epochs:
            print(f"stopping before the SLURM time limit ({remaining:.0f}s left, epochs take {self._longest:.0f}s); resume state saved", file=sys.stderr, flush=True)
            trainer.should_stop = True
            trainer.strategy.barrier()
            self._time_limited = True

    def on_train_end(self, trainer, pl_module) -> None:
        if getattr(self, "_time_limited", False):
            raise TimeLimitReached()


def finite_or_raise(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{what} is {value}")
    return value
