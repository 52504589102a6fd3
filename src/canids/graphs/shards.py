"""Sharded graph caches: a graph set as files of at most ``shard_windows`` windows, memory-mapped.

Why: preprocessing used to hold every graph of a dataset in memory and write one torch file per
cache, and every stage loaded a whole cache, so memory grew with the dataset. Now a graph set is
a sequence of shard files, each written atomically as soon as ``shard_windows`` windows are built,
and a cache is an index (JSON: the sets, their captures and shards) beside them. Loading maps
the shards instead of reading them: the per-window arrays (labels, times, pointers: bytes per
window) are read into memory, the node and edge tables (kilobytes per window) stay file-backed
and ``GraphSet.batch`` gathers only the windows it is asked for (``FileRows``).

Why this format. A shard is a sequence of standard NPY records (``numpy.lib.format``), one per
``GraphSet`` tensor after a JSON record, each starting on a 64-byte boundary: every record can be
mapped in place with ``numpy.frombuffer`` over one ``mmap`` of the file, with no copy and no
parsing. The alternatives the ecosystem offers were weighed: ``torch.load(mmap=True)`` maps a
torch file too but hides the mapping, so pages once read can never be handed back and a training
epoch over a large cache would keep all of it resident (counted in the rule's peak memory);
``numpy.load(mmap_mode=...)`` maps one array per ``.npy`` file, 13 files per shard for the
manifest to pin; PyG's on-disk datasets store one graph per row (a database round trip per
window) and would replace the collated layout that makes ``batch`` a few index operations. Here
one ``mmap`` per shard is kept, and the pages of every loaded set are handed back
(``MADV_DONTNEED``; they stay in the page cache, not in the process) after every
``RELEASE_BYTES`` the process has gathered from them, so a stage's resident memory stays
bounded whatever the cache's size and however many sets it maps.

A shard is self-describing (its windows' captures as indices into the set's capture list, its
attack-type names) and refused when missing, shorter than the index says (truncated) or, with
``verify``, when its sha256 differs; the preprocess manifest pins every shard by sha256, so a
stage that verifies its upstream manifest refuses a tampered shard by name before loading it.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from canids.graphs.graphset import _TENSOR_FIELDS, GraphSet
from canids.shape import graph_shard
from canids.util import atomic_path

FORMAT = "canids-graph-shards"
VERSION = 1
_SHARD_FORMAT = "canids-graph-shard"
_ALIGN = 64
#: Fields held in memory after loading: one row (or one pointer) per window.
WINDOW_FIELDS = ("u", "y", "attack_frames", "capture", "attack_type", "t_start")
#: Fields left in the mapped files: one row per node or per edge.
NODE_FIELDS = ("x", "node_vocab", "node_can_id")
EDGE_FIELDS = ("edge_attr",)
#: Bytes the process gathers from mapped shards (with the pages around them) before handing them back.
RELEASE_BYTES = 256 << 20
_PAGE = mmap.PAGESIZE


class ShardError(ValueError):
    """A graph cache or one of its shards is missing, truncated, malformed or does not match."""


# --------------------------------------------------------------------------- one shard file


def _write_record(handle: IO[bytes], array: np.ndarray) -> None:
    """One NPY record, padded so that the next one starts on a 64-byte boundary."""
    np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
    pad = -handle.tell() % _ALIGN
    if pad:
        handle.write(b"\0" * pad)


class _HashingWriter:
    """A binary file that hashes what it writes (the shard's sha256 without reading it back)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.handle.write(view)
        self.digest.update(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size


def write_shard(path: str | os.PathLike, part: GraphSet, capture_ids: np.ndarray) -> dict:
    """Write ``part`` (a self-contained GraphSet: pointers from 0, local node indices) atomically.

    ``capture_ids[c]`` is the set-wide index of the part's capture ``c``. Returns the shard's
    index entry (windows, size, sha256). A full disk raises ``OSError`` naming ``path`` and
    leaves no file there (``canids.util.atomic_path``).
    """
    meta = {"format": _SHARD_FORMAT, "version": VERSION, "windows": len(part), "window_size": int(part.window_size), "attack_types": list(part.attack_types), "capture_ids": [int(c) for c in capture_ids], "fields": list(_TENSOR_FIELDS)}
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        out = _HashingWriter(raw)
        _write_record(out, np.frombuffer(json.dumps(meta).encode(), np.uint8))
        for name in _TENSOR_FIELDS:
            _write_record(out, getattr(part, name).numpy())
    return {"windows": len(part), "size_bytes": out.size, "sha256": out.digest.hexdigest()}


@dataclass
class Shard:
    """One mapped shard: its metadata and its arrays as read-only views of the mapping."""

    path: Path
    meta: dict
    arrays: dict[str, np.ndarray]
    mapping: mmap.mmap | None

    def release(self) -> None:
        """Hand the mapped pages back to the kernel (they stay in the page cache; later reads fault them in)."""
        if self.mapping is not None:
            self.mapping.madvise(mmap.MADV_DONTNEED)


def read_shard(path: str | os.PathLike, expected: dict | None = None, verify: bool = False) -> Shard:
    """Map a shard file; refused, naming it, when missing, truncated, malformed or (``verify``) altered."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"graph shard missing: {path}" + (f" (expected {expected['size_bytes']} bytes, sha256 {expected['sha256']})" if expected else ""))
    size = path.stat().st_size
    if expected is not None and size != expected["size_bytes"]:
        what = "truncated" if size < expected["size_bytes"] else "longer than written"
        raise ShardError(f"graph shard {path}: {what}: {size} bytes, expected {expected['size_bytes']} (sha256 {expected['sha256']}); rerun preprocessing")
    if verify and expected is not None:
        from canids.util import sha256_file

        actual = sha256_file(path)
        if actual != expected["sha256"]:
            raise ShardError(f"graph shard {path} does not match its index: expected sha256 {expected['sha256']}, found {actual}; refusing to use it")
    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else None
    if mapping is None:
        raise ShardError(f"graph shard {path}: empty file, expected a {_SHARD_FORMAT} shard")
    offset, records = 0, []
    while offset < size and len(records) < len(_TENSOR_FIELDS) + 1:
        array, offset = _read_record(path, mapping, offset, size)
        records.append(array)
    if len(records) != len(_TENSOR_FIELDS) + 1:
        raise ShardError(f"graph shard {path}: truncated: {len(records)} of {len(_TENSOR_FIELDS) + 1} records present ({size} bytes)")
    try:
        meta = json.loads(records[0].tobytes())
    except ValueError as err:
        raise ShardError(f"graph shard {path}: unreadable metadata ({err}); expected a {_SHARD_FORMAT} shard") from None
    if meta.get("format") != _SHARD_FORMAT or meta.get("fields") != list(_TENSOR_FIELDS):
        raise ShardError(f"graph shard {path}: format {meta.get('format')!r} with fields {meta.get('fields')}, expected {_SHARD_FORMAT} with fields {list(_TENSOR_FIELDS)}")
    return Shard(path, meta, dict(zip(_TENSOR_FIELDS, records[1:])), mapping)


def _read_record(path: Path, mapping: mmap.mmap, offset: int, size: int) -> tuple[np.ndarray, int]:
    """The NPY record at ``offset`` as a view of the mapping, and where the next record starts."""
    import io

    head = io.BytesIO(mapping[offset : offset + min(size - offset, 1 << 16)])
    try:
        version = np.lib.format.read_magic(head)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(head)
    except ValueError as err:
        raise ShardError(f"graph shard {path}: malformed record at byte {offset} ({err}); the file is truncated or not a graph shard") from None
    start = offset + head.tell()
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if fortran or dtype.hasobject:
        raise ShardError(f"graph shard {path}: record at byte {offset} is not a plain C-ordered array")
    if start + nbytes > size:
        raise ShardError(f"graph shard {path}: truncated: a record needs bytes up to {start + nbytes}, the file has {size}")
    array = np.frombuffer(mapping, dtype, count=nbytes // dtype.itemsize, offset=start).reshape(shape) if nbytes else np.zeros(shape, dtype)
    end = start + nbytes
    return array, end + (-end % _ALIGN)


# --------------------------------------------------------------------------- file-backed rows


@dataclass(eq=False)
class _Pages:
    """The shards behind one loaded set.

    What a set reads counts against the PROCESS's budget (``_PROCESS_PAGES``), not its own:
    when the process has gathered ``RELEASE_BYTES`` from mapped shards, every live set hands
    its pages back. A budget per set let each of evaluation's eight sets keep up to 256 MB
    resident once read, so its peak grew with the dataset (1.8 GB at 50 M frames).
    """

    shards: list[Shard]

    def __post_init__(self) -> None:
        _PROCESS_PAGES.live.add(self)

    def touch(self, nbytes: int) -> None:
        _PROCESS_PAGES.touch(nbytes)

    def release(self) -> None:
        for shard in self.shards:
            shard.release()


@dataclass
class _ProcessPages:
    """What every loaded set of this process has gathered from its shards since the last release."""

    live: "weakref.WeakSet[_Pages]" = field(default_factory=weakref.WeakSet)
    budget: int = RELEASE_BYTES
    touched: int = 0

    def touch(self, nbytes: int) -> None:
        """Count ``nbytes``; past the budget, hand back every live set's pages."""
        self.touched += nbytes
        if self.touched >= self.budget:
            for pages in list(self.live):
                pages.release()
            self.touched = 0


_PROCESS_PAGES = _ProcessPages()


@dataclass
class FileRows:
    """One tensor field of a set, split over the shards' mappings along ``axis``.

    ``rows[index]`` (``axis`` 0) or ``rows[:, index]`` (``axis`` 1) gathers the given rows into a
    new in-memory tensor, as indexing the tensor would; ``value_offsets`` are added to the rows of
    each shard (a shard's edge_index holds node indices local to the shard).
    """

    chunks: list[np.ndarray]
    axis: int = 0
    value_offsets: list[int] | None = None
    pages: _Pages | None = None
    starts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.starts = np.cumsum([0, *(c.shape[self.axis] for c in self.chunks)])

    @property
    def shape(self) -> tuple[int, ...]:
        first = self.chunks[0].shape
        return tuple(int(self.starts[-1]) if d == self.axis else first[d] for d in range(len(first)))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, tuple):
            if self.axis != 1 or len(key) != 2 or key[0] != slice(None):
                raise IndexError(f"file-backed rows (axis {self.axis}) take [index] or, along axis 1, [:, index]; got {key!r}")
            key = key[1]
        elif self.axis != 0:
            raise IndexError("file-backed rows along axis 1 take [:, index]")
        index = np.asarray(key, dtype=np.int64).reshape(-1)
        out = self._gather(index)
        if self.pages is not None and len(index):
            runs = 1 + int(np.count_nonzero(np.diff(index) != 1))
            self.pages.touch(out.nbytes + runs * _PAGE)
        return torch.from_numpy(out)

    def _gather(self, index: np.ndarray) -> np.ndarray:
        if len(self.chunks) == 1:
            return self._take(0, index)
        chunk = np.searchsorted(self.starts[1:], index, side="right")
        first = self.chunks[0]
        shape = list(first.shape)
        shape[self.axis] = len(index)
        out = np.empty(shape, first.dtype)
        for c in np.unique(chunk):
            mask = chunk == c
            if self.axis == 0:
                out[mask] = self._take(int(c), index[mask] - self.starts[c])
            else:
                out[:, mask] = self._take(int(c), index[mask] - self.starts[c])
        return out

    def _take(self, c: int, local: np.ndarray) -> np.ndarray:
        taken = np.take(self.chunks[c], local, axis=self.axis)
        if self.value_offsets is not None and self.value_offsets[c]:
            taken += self.value_offsets[c]
        return taken

    def numpy(self) -> np.ndarray:
        """Every row, in memory (for small sets: a test split streamed window by window)."""
        return self._gather(np.arange(int(self.starts[-1])))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)


# --------------------------------------------------------------------------- writing sets


class ShardWriter:
    """Writes one graph set as shards of at most ``shard_windows`` windows, capture part by part.

    ``add`` takes the windows of one or more captures (``build_graphs``); the set's capture list
    and attack types grow as parts arrive, and a shard is written as soon as enough windows are
    pending, so memory holds at most one shard plus the part being added.
    """

    def __init__(self, index_dir: str | os.PathLike, name: str, shard_windows: int, window_size: int) -> None:
        if shard_windows < 1:
            raise ValueError(f"shard_windows must be >= 1, got {shard_windows}")
        self.index_dir, self.name, self.shard_windows, self.window_size = Path(index_dir), name, int(shard_windows), int(window_size)
        self.capture_names: list[str] = []
        self.attack_types: set[str] = {"normal"}
        self.shards: list[dict] = []
        self.paths: list[Path] = []
        self._pending: list[tuple[GraphSet, int]] = []
        self._pending_windows = 0

    def add(self, part: GraphSet, same_capture: bool = False) -> None:
        """Append ``part``'s windows; with ``same_capture``, ``part`` (one capture) continues
        the set's last capture (``build.capture_graph_chunks``) instead of adding one."""
        if same_capture:
            if len(part.capture_names) != 1 or not self.capture_names or part.capture_names[0] != self.capture_names[-1]:
                raise ValueError(f"{self.name}: a part continuing capture {self.capture_names[-1:] or 'none'} must hold that one capture, not {part.capture_names}")
            offset = len(self.capture_names) - 1
        else:
            offset = len(self.capture_names)
            self.capture_names.extend(part.capture_names)
        self.attack_types.update(part.attack_types)
        if len(part):
            self._pending.append((part, offset))
            self._pending_windows += len(part)
        while self._pending_windows >= self.shard_windows:
            self._flush(self.shard_windows)

    def close(self) -> dict:
        """Write what is pending; the set's index entry."""
        if self._pending_windows:
            self._flush(self._pending_windows)
        return {"windows": sum(s["windows"] for s in self.shards), "window_size": self.window_size, "capture_names": self.capture_names, "attack_types": sorted(self.attack_types), "shards": self.shards}

    def _flush(self, limit: int) -> None:
        pieces, ids, taken = [], [], 0
        while taken < limit:
            part, offset = self._pending[0]
            n = min(len(part), limit - taken)
            pieces.append(part.window_range(0, n))
            ids.append(np.arange(offset, offset + len(part.capture_names)))
            taken += n
            if n == len(part):
                self._pending.pop(0)
            else:
                self._pending[0] = (part.window_range(n, len(part)), offset)
        self._pending_windows -= taken
        shard = GraphSet.concat(pieces)
        relative = graph_shard(self.name, len(self.shards))
        path = self.index_dir / relative
        self.paths.append(path)
        entry = write_shard(path, shard, np.concatenate(ids))
        self.shards.append({"path": relative, **entry})


def write_index(path: str | os.PathLike, sets: dict[str, dict], extra: dict) -> None:
    """The cache's index (written after every shard): its sets, their captures and shards, and ``extra``."""
    from canids.util import atomic_write_json

    atomic_write_json(path, {"format": FORMAT, "version": VERSION, "extra": extra, "sets": sets})


def clear_shards(index_dir: str | os.PathLike) -> None:
    """Remove the shard files (and then empty set directories) a previous run left beside an index."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        return
    for sub in index_dir.iterdir():
        if sub.is_dir():
            for shard in sub.glob("*.shard"):
                shard.unlink()
            if not any(sub.iterdir()):
                sub.rmdir()


def save_graphsets(path: str | os.PathLike, sets: dict[str, GraphSet], extra: dict | None = None, shard_windows: int = 20_000) -> None:
    """Write in-memory GraphSets as a sharded cache with its index at ``path``."""
    index_dir = Path(path).parent
    clear_shards(index_dir)
    entries = {}
    for name, graphs in sets.items():
        writer = ShardWriter(index_dir, name, shard_windows, graphs.window_size)
        writer.add(graphs)
        entries[name] = writer.close()
        entries[name]["attack_types"] = list(graphs.attack_types)  # as given, even when some type has no window
    write_index(path, entries, extra or {})


def shard_paths(path: str | os.PathLike) -> dict[str, list[Path]]:
    """Every shard of a cache, per set, from its index."""
    index = read_index(path)
    return {name: [Path(path).parent / s["path"] for s in entry["shards"]] for name, entry in index["sets"].items()}


# --------------------------------------------------------------------------- reading sets


def read_index(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"graph cache index missing: {path}; expected a {FORMAT} index written by preprocessing")
    try:
        index = json.loads(path.read_bytes())
    except ValueError as err:
        raise ShardError(f"graph cache index {path}: not valid JSON ({err})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise ShardError(f"graph cache index {path}: format {found!r}, expected {FORMAT!r} version {VERSION} (a root written before sharded caches: rerun preprocessing)")
    return index


def load_graphsets(path: str | os.PathLike, verify: bool = False) -> tuple[dict[str, GraphSet], dict]:
    """The sets of a sharded cache (node and edge tables file-backed) and the cache's ``extra``.

    ``verify`` also checks every shard's sha256 against the index; a stage need not, as it has
    verified the preprocess manifest, which pins every shard.
    """
    path = Path(path)
    index = read_index(path)
    return {name: _load_set(path.parent, entry, verify) for name, entry in index["sets"].items()}, index["extra"]


def _load_set(index_dir: Path, entry: dict, verify: bool) -> GraphSet:
    shards = [read_shard(index_dir / s["path"], s, verify) for s in entry["shards"]]
    types = list(entry["attack_types"])
    if not shards:
        empty = GraphSet.concatenate_parts([], entry["capture_names"], types, entry["window_size"])
        return empty
    window: dict[str, list[np.ndarray]] = {name: [] for name in WINDOW_FIELDS}
    node_ptr, edge_ptr, node_offsets = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], []
    n_nodes = n_edges = 0
    for shard in shards:
        a = shard.arrays
        for name in WINDOW_FIELDS:
            window[name].append(np.array(a[name]))
        remap_type = np.array([types.index(t) for t in shard.meta["attack_types"]], np.int64)
        window["attack_type"][-1] = remap_type[window["attack_type"][-1]] if len(remap_type) and len(window["attack_type"][-1]) else window["attack_type"][-1]
        window["capture"][-1] = np.asarray(shard.meta["capture_ids"], np.int64)[window["capture"][-1]] if len(window["capture"][-1]) else window["capture"][-1]
        node_ptr.append(a["node_ptr"][1:] + n_nodes)
        edge_ptr.append(a["edge_ptr"][1:] + n_edges)
        node_offsets.append(n_nodes)
        n_nodes += len(a["x"])
        n_edges += a["edge_attr"].shape[0]
    pages = _Pages(shards)
    rows = {name: FileRows([s.arrays[name] for s in shards], pages=pages) for name in (*NODE_FIELDS, *EDGE_FIELDS)}
    rows["edge_index"] = FileRows([s.arrays["edge_index"] for s in shards], axis=1, value_offsets=node_offsets, pages=pages)
    tensors = {name: torch.from_numpy(np.concatenate(parts)) for name, parts in window.items()}
    return GraphSet(**rows, **tensors, node_ptr=torch.from_numpy(np.concatenate(node_ptr)), edge_ptr=torch.from_numpy(np.concatenate(edge_ptr)), capture_names=list(entry["capture_names"]), attack_types=types, window_size=int(entry["window_size"]))  # type: ignore[arg-type]
