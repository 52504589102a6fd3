"""Send a job's output both to its Snakemake log file and to the console.

SLURM jobs are read from their log files; local runs should still show progress live.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path
from typing import IO, Iterator


class _Tee:
    def __init__(self, *streams: IO[str]) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
            stream.flush()
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


#: The last line of a finished job's log: its peak resident memory (bench/scale.py reads it).
PEAK_MEMORY = "[canids] peak resident memory of this job:"


def peak_rss_mb() -> float:
    """This process's peak resident set size (``ru_maxrss``, kernel-accounted: unlike Snakemake's
    ``benchmark:`` files, which sample every 0.5 s and then every 30 s, it cannot miss a peak)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def logged(log_path: str | Path) -> Iterator[None]:
    """Tee stdout/stderr into ``log_path``; an exception is logged with its traceback, then re-raised.

    A job that finishes ends its log with its peak memory (``PEAK_MEMORY``)."""
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old_out, old_err = sys.stdout, sys.stderr
    with open(path, "w", buffering=1) as handle:
        sys.stdout, sys.stderr = _Tee(old_out, handle), _Tee(old_err, handle)
        try:
            yield
            handle.write(f"{PEAK_MEMORY} {peak_rss_mb():.1f} MB\n")
        except BaseException:
            traceback.print_exc(file=handle)
            raise
        finally:
            sys.stdout, sys.stderr = old_out, old_err


def single_input(value) -> str | None:
    """A named Snakemake input that an input function may leave empty: its one path, or None."""
    if value is None or isinstance(value, str):
        return value or None
    items = list(value)
    return str(items[0]) if items else None
