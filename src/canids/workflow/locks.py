"""One writer per stage result, across working directories, hosts and SLURM jobs.

Snakemake locks its working directory, not the experiment root, so two runs from different
``--directory`` (or hosts, on a shared file system) could train the same stage at once and
take over each other's resume state. Before any job runs, the main Snakemake process of a run
takes a lock for every stage result it will write: ``ROOT/.locks/DATASET/[VARIANT/]STAGE.lock``,
created with ``O_EXCL`` (atomic on local and NFS file systems) and holding JSON that names the
holder: host, pid, SLURM job, working directory, start time. A thread refreshes the locks'
times while the run lives; they are released when it ends.

A lock another live run holds stops the new run before any job, with a message naming the
holder. A lock is broken safely when its holder is gone: on the same host its pid no longer
runs that process (checked with the process start time, so a reused pid does not count);
elsewhere its time has not been refreshed for ``STALE_AFTER_S``. Retries and plain reruns of a
run therefore take its locks over (the dead holder), and continue its resume state.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LockHeld", "StageLocks", "STALE_AFTER_S"]

#: A lock from another host whose time was not refreshed for this long belongs to a dead run.
STALE_AFTER_S = 600.0
#: How often a live run refreshes its locks' times.
REFRESH_S = 60.0


class LockHeld(RuntimeError):
    """Another live run writes a stage result this run needs; the message names the holder."""


def _process_start(pid: int) -> str | None:
    """The start time of a running process (field 22 of /proc/PID/stat), to tell a reused pid
    apart; None when no such process runs (a zombie, killed and not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _me() -> dict:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": _process_start(pid),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "workdir": os.getcwd(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def describe(holder: dict) -> str:
    slurm = f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    return f"host {holder.get('host')}, pid {holder.get('pid')}{slurm}, working directory {holder.get('workdir')}, since {holder.get('started')}"


def holder_alive(holder: dict, lock: Path) -> bool:
    """Whether the run that wrote a lock still runs (see the module docstring)."""
    if holder.get("host") == socket.gethostname():
        pid = holder.get("pid")
        return isinstance(pid, int) and _process_start(pid) is not None and _process_start(pid) == holder.get("pid_start")
    try:
        return time.time() - lock.stat().st_mtime < STALE_AFTER_S
    except OSError:
        return False


@dataclass
class StageLocks:
    """The stage locks one run holds."""

    root: Path
    held: list[Path] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def path(self, dataset: str, variant: str | None, stage: str, run: str = "") -> Path:
        return self.root / ".locks" / dataset / f"{variant or ''}{run}" / f"{stage}.lock"

    def acquire(self, dataset: str, variant: str | None, stage: str, run: str = "") -> None:
        """Take the lock of one stage result, breaking it if its holder is gone; else ``LockHeld``."""
        lock = self.path(dataset, variant, stage, run)
        lock.parent.mkdir(parents=True, exist_ok=True)
        me = _me()
        for _ in range(3):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(lock.read_text())
                except (OSError, ValueError):
                    holder = {}
                if holder.get("host") == me["host"] and holder.get("pid") == me["pid"]:
                    return  # ours already
                if holder and holder_alive(holder, lock):
                    where = "/".join(p for p in (dataset, f"{variant or ''}{run}", stage) if p)
                    raise LockHeld(
                        f"{where} is being written by another run ({describe(holder)}); lock {lock}. "
                        "Wait for that run to finish, or stop it; a lock whose run is gone is broken automatically."
                    ) from None
                broken = lock.with_name(f"{lock.name}.broken.{me['pid']}.{time.monotonic_ns()}")
                try:
                    os.replace(lock, broken)  # only one breaker wins the rename
                    broken.unlink()
                except OSError:
                    pass
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self.held.append(lock)
            return
        raise LockHeld(f"could not take {lock}: it keeps changing hands")

    def refresh_in_background(self) -> None:
        """Refresh the held locks' times until released (other hosts judge liveness by them)."""

        def beat() -> None:
            while not self._stop.wait(REFRESH_S):
                for lock in list(self.held):
                    try:
                        os.utime(lock)
                    except OSError:
                        pass

        threading.Thread(target=beat, name="canids-stage-locks", daemon=True).start()
        atexit.register(self.release)

    def release(self) -> None:
        self._stop.set()
        me = _me()
        for lock in self.held:
            try:
                holder = json.loads(lock.read_text())
                if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
                    lock.unlink()
            except (OSError, ValueError):
                pass
        self.held.clear()
