"""Stop training cleanly before the scheduler's wall time, so the next attempt can resume.

SLURM kills a job at its time limit wherever it is; an epoch cut short is lost. Instead,
``WallTimeGuard`` checks after every training epoch whether another one still fits before the
job's end and otherwise stops the trainer; the epoch's resume checkpoint is written as usual
(see ``canids.stages.resume``) and the process exits with ``EXIT_TIME_LIMIT`` (75), which the
workflow scripts turn into a failed attempt that Snakemake retries with a longer limit.

When the job ends comes from ``SLURM_JOB_END_TIME`` (SLURM >= 23.02), else from ``squeue``'s
time left for ``SLURM_JOB_ID`` (older SLURM), else from ``CANIDS_JOB_END_TIME`` (any other
scheduler, or tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from lightning.pytorch.callbacks import Callback

#: Exit status of a trainer that stopped itself before the SLURM time limit; resume state is saved.
EXIT_TIME_LIMIT = 75


class TimeLimitReached(SystemExit):
    """Raised to end the process cleanly before the job's time limit; resume state is on disk."""

    def __init__(self) -> None:
        super().__init__(EXIT_TIME_LIMIT)


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


class WallTimeGuard(Callback):
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
