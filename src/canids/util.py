"""Low-level helpers shared by every layer: content digests, atomic file writes, and the C
heap's policy (``tune_heap``, ``trim_heap``).

Atomic writes matter because SLURM kills jobs at arbitrary points: a reader must only ever
see a complete file or no file, never a truncated checkpoint that looks finished.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, streamed in 1 MiB chunks (checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; on success fsync it and rename it onto ``path``.

    The temporary file lives in the same directory so the final ``os.replace`` is a
    same-filesystem rename, which POSIX guarantees to be atomic. On any exception the
    temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; published files get the usual mode
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        cause = _os_error(err)
        if cause is not None and cause.filename is None:  # a full disk says which file it was writing
            raise OSError(cause.errno, cause.strerror, str(target)) from err
        raise


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind an exception (torch reports a failed write as a RuntimeError raised while handling it)."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, OSError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_save(path: str | os.PathLike, save: Callable[[IO[bytes]], None]) -> None:
    """Run ``save(file)`` (e.g. ``torch.save``) on a temporary file and atomically publish it.

    ``save`` writes to an open Python file, so a full disk raises ``OSError`` ENOSPC naming
    ``path`` (``torch.save`` to a path reports it as an unreadable stream error).
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        save(handle)


def _json_default(obj: Any) -> Any:
    """Make numpy scalars and paths JSON-serialisable without importing numpy here."""
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _count_lines(path: str) -> int:
    import gzip

    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    count = 0
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            count += chunk.count(b"\n")
    return count


class FileDigests:
    """sha256 of files, remembered by (size, mtime, ctime, inode) in a JSON file between runs.

    Planning a run checks every artifact of every stage it reads against its manifest; hashing
    graph caches and raw captures at each ``snakemake -n`` would take seconds. A file whose
    size, modification time, inode and inode-change time (which no user-level tool can set
    back) are unchanged since it was hashed has the remembered digest. The cache is advisory:
    an unreadable or unwritable cache file only means hashing again.
    """

    def __init__(self, cache: str | os.PathLike | None = None) -> None:
        self.cache = Path(cache) if cache else None
        self._known: dict[str, list] = {}
        self._dirty = False
        if self.cache is not None:
            try:
                self._known = json.loads(self.cache.read_text())
            except (OSError, ValueError):
                self._known = {}

    def sha256(self, path: str | os.PathLike) -> str:
        st = os.stat(path)
        key = os.path.abspath(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        known = self._known.get(key)
        if isinstance(known, list) and known[:4] == stamp:
            return str(known[4])
        digest = sha256_file(path)
        self._known[key] = [*stamp, digest]
        self._dirty = True
        return digest

    def lines(self, path: str | os.PathLike) -> int:
        """Newlines in a file (decompressed if gzip), remembered like the digest: an upper bound on its rows."""
        return int(self.remember(path, "lines", _count_lines))

    def remember(self, path: str | os.PathLike, kind: str, compute: Callable[[str], Any]) -> Any:
        """``compute(path)`` (JSON-serialisable), remembered like the digest under ``kind``."""
        st = os.stat(path)
        key = f"{kind}:{os.path.abspath(path)}"
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        known = self._known.get(key)
        if isinstance(known, list) and known[:4] == stamp:
            return known[4]
        value = compute(str(path))
        self._known[key] = [*stamp, value]
        self._dirty = True
        return value

    def save(self) -> None:
        if self.cache is None or not self._dirty:
            return
        try:
            atomic_write_text(self.cache, json.dumps(self._known))
            self._dirty = False
        except OSError:
            pass  # a read-only root: digests are recomputed next time


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, loaded once (None where it cannot be)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    return getattr(_libc(), "malloc_trim", None)


#: glibc's ``mallopt`` parameters (malloc.h) and the values ``tune_heap`` gives them.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_MMAP_THRESHOLD, HEAP_TRIM_THRESHOLD = 32 * 2**20, 64 * 2**20


def tune_heap() -> bool:
    """Give glibc's heap, from the start, the thresholds it otherwise reaches only after a
    process has freed its larger arrays: blocks up to 32 MiB come from the heap, not from a
    fresh ``mmap`` each (whose pages fault in again on every allocation), and up to 64 MiB
    free at its top stays for reuse. glibc starts both at 128 KiB and raises them (to at most
    32 / 64 MiB) each time it unmaps a freed block, so a stage that allocates and frees
    arrays of every size kept mapping and faulting memory in before: preprocessing hcrl_sa
    on one core took 53 k page faults and ran at 1.99 M frames/s, with this 33 k and
    2.13 M (medians of 6 interleaved runs), peak memory +4 MB. A process-wide setting, made
    once where a stage process starts (``workflow.jobs.run_job``); whether it was made (glibc only).
    """
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None or _malloc_trim() is None:  # not glibc: its own policy
        return False
    made = [mallopt(parameter, value) for parameter, value in ((_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD))]
    return all(made)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (every field a ``size_t``)."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    """glibc's ``mallinfo2`` (glibc 2.33 and later), or None."""
    function = getattr(_libc(), "mallinfo2", None)
    if function is not None:
        function.restype = _MallInfo2
        function.argtypes = []
    return function


def heap_free_bytes() -> int | None:
    """Bytes the C heap holds free (glibc's ``mallinfo2().fordblks``: freed, not yet handed
    back to the operating system), or None where the C library cannot say. It walks the
    heap's free lists: ~0.25 ms."""
    info = _mallinfo2()
    return None if info is None else int(info().fordblks)


def trim_heap(above: int = 0) -> bool:
    """Hand the C heap's free memory back to the operating system when it holds more than
    ``above`` bytes free (where the C library cannot say how much, trim anyway); whether it trimmed.

    Batches of window graphs allocate tensors of every size; glibc keeps what they free in
    its heaps (one per thread torch computes on), so a stage that scored 150,000 windows in
    batches of 1,024 held 450 MB more than it used. A trim costs about half a millisecond,
    but what it hands back is the next step's working memory, which the step then faults
    back in page by page: trimming a training loop's steady ~100 MB on every 2,048 windows
    cost the teacher VGAE 4.5 % and the GAT 7 % of their graphs/s (hcrl_sa, batch 128,
    2 threads). Hence ``above``: trim what grows past a working set, keep the working set.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    if above > 0:
        free = heap_free_bytes()
        if free is not None and free <= above:
            return False
    trim(0)
    return True
