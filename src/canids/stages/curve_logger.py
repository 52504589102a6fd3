"""The training curve as a CSV file that survives a resume: each epoch exactly once.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts and buffers rows,
so an attempt that resumes from the previous attempt's checkpoint would lose the curve of the
epochs already done. ``ResumableCSVLogger`` is a logger on Lightning's public ``Logger`` base that
writes the same file (``<save_dir>/metrics.csv``, one row per log call: the logged metrics,
``epoch`` and ``step``, columns in sorted order as Lightning's) but:

* appends each row at once and fsyncs it, so the rows of a finished epoch are on disk before
  the resume checkpoint that follows them;
* keeps an existing file; ``keep_epochs_before(n)``, called when training starts
  (``canids.stages.resume.ResumeState``), drops the rows of epochs >= ``n``, i.e. those of an
  epoch cut short by a kill, and rows that a kill left half-written. ``n = 0`` starts afresh.

``canids.workflow.train`` copies the file to the stage's ``training_curves.csv``;
``canids.stages.plots`` reads it.
"""

from __future__ import annotations

import csv
import io
import os
from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from canids.util import atomic_path

METRICS_FILE = "metrics.csv"


class ResumableCSVLogger(Logger):
    """Append-only CSV training curve under ``save_dir`` that a resumed attempt continues."""

    def __init__(self, save_dir: str | os.PathLike) -> None:
        super().__init__()
        self._save_dir = os.fspath(save_dir)
        self.metrics_file = Path(self._save_dir) / METRICS_FILE
        self._rows_logged = 0

    # ------------------------------------------------------------ Logger's abstract members

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return self._save_dir

    @property
    def log_dir(self) -> str:
        return self._save_dir

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Not recorded here: each stage's manifest holds its resolved settings."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}
        row["step"] = self._rows_logged if step is None else step
        self._rows_logged += 1
        self._append(row)

    # ------------------------------------------------------------ resume

    @rank_zero_only
    def keep_epochs_before(self, epoch: int) -> None:
        """Drop rows of epochs >= ``epoch`` (0-based; 0 = start afresh) and rows that do not parse."""
        path = self.metrics_file
        if not path.exists():
            return
        if epoch <= 0:
            path.unlink()
            return
        header, rows = _read(path)
        kept = []
        for row in rows:
            try:
                row_epoch = int(float(row.get("epoch") or ""))
            except ValueError:
                continue
            if row_epoch < epoch:
                kept.append(row)
        _write(path, header, kept)

    # ------------------------------------------------------------ writing

    def _append(self, row: dict[str, Any]) -> None:
        path = self.metrics_file
        header = _header(path)
        columns = sorted(set(header) | set(row))
        if columns != header:  # a new file, or new keys: (re)write the whole file with the wider header
            _, rows = _read(path) if header else ([], [])
            _write(path, columns, rows + [row])
            return
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=header).writerow(row)
        with open(path, "a", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="") as handle:
            return list(next(csv.reader(handle), []))
    except OSError:
        return []


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and complete rows; a short or overlong line (cut by a kill mid-write) is dropped."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = [row for row in reader if None not in row and not any(v is None for v in row.values())]
    return header, rows


def _write(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    """Replace ``path`` atomically with ``header`` and ``rows`` (missing values left empty)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
