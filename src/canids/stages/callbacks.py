"""Lightning callbacks every training stage runs: readable progress in job logs, a hard stop on
a NaN/inf loss, and the test-only slow-down that lets tests kill a job mid-epoch.

Resume and wall-time callbacks live with their protocols (``canids.stages.resume``,
``canids.stages.walltime``).
"""

from __future__ import annotations

import math
import os
import sys
import time

import torch
from lightning.pytorch.callbacks import Callback

#: Test-only: seconds of sleep added to every training epoch, spread over its batches. Never set it in production.
TEST_EPOCH_SLEEP_ENV = "CANIDS_TEST_EPOCH_SLEEP_S"


class NonFiniteLossError(RuntimeError):
    """Raised when a loss becomes NaN or infinite: continuing would only waste the allocation."""


class EpochLog(Callback):
    """One log line per epoch (a progress bar full of carriage returns is unreadable in SLURM logs)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
        text = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        elapsed = time.perf_counter() - getattr(self, "_t0", time.perf_counter())
        print(f"[{pl_module.__class__.__name__}] epoch {trainer.current_epoch + 1}/{trainer.max_epochs} {elapsed:.1f}s {text}", file=sys.stderr, flush=True)


class FiniteLossGuard(Callback):
    """Stop the run with a clear error at the first NaN/inf training loss, naming the setting to change."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise NonFiniteLossError(f"{pl_module.__class__.__name__}: loss became {float(loss)} at epoch {trainer.current_epoch + 1}, batch {batch_idx}; lower learning_rate or check the input graphs")


class SlowEpochsForTests(Callback):
    """Test-only (``CANIDS_TEST_EPOCH_SLEEP_S``): slow every epoch down, spread over its batches."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = trainer.num_training_batches
        n = int(n) if isinstance(n, (int, float)) and math.isfinite(n) and n > 0 else 1
        time.sleep(self.seconds / n)


def slow_epochs_for_tests() -> SlowEpochsForTests | None:
    """The test-only slow-down when ``CANIDS_TEST_EPOCH_SLEEP_S`` asks for one, else None."""
    seconds = float(os.environ.get(TEST_EPOCH_SLEEP_ENV) or 0)
    return SlowEpochsForTests(seconds) if seconds > 0 else None
