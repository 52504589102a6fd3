"""Checkpoint files that appear complete or not at all, whatever instant the job is killed.

Lightning's ``TorchCheckpointIO`` writes a checkpoint in place, so a kill during the write (SLURM
time limit, scancel, OOM killer) leaves a truncated file that the next attempt fails to load.
``AtomicCheckpointIO`` is a ``CheckpointIO`` plugin (``Trainer(plugins=[...])``) that writes every
checkpoint the trainer saves (best, resume, the batch-size tuner's) to a temporary sibling,
fsyncs it and renames it onto the target with ``os.replace``: a reader sees the previous
complete file or the new one. With it the stock ``ModelCheckpoint`` callbacks are safe to use.

``after_save`` runs once the file is in place, with the checkpoint dict and the path; the
resume protocol uses it to write its ``resume.json`` sidecar (``canids.stages.resume``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from lightning.pytorch.plugins.io import TorchCheckpointIO

from canids.util import atomic_path

#: Called after a checkpoint file is in place: ``after_save(checkpoint_dict, path)``.
AfterSave = Callable[[dict, Path], None]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose files are written to a temporary sibling, fsynced, then renamed."""

    def __init__(self, after_save: AfterSave | None = None) -> None:
        super().__init__()
        self.after_save = after_save

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
        if self.after_save is not None:
            self.after_save(checkpoint, Path(path))
