"""Readers for every raw CAN format users have on disk, all producing one ``Capture``.

Why this module looks the way it does:

* Speed. A training run starts by reading millions of frames, so the common case
  (can-train-and-test CSV, format ``"ctt"``) is parsed by pyarrow's C++ CSV reader with
  explicit column types and decoded with numpy lookup tables: no per-row Python.
  Validation is vectorised too; only once a problem is found is the file re-read by a
  slower, line-exact path that can say *which line* is wrong.
* Honesty about bad data. Every bad row is either an error naming the file, line,
  offending value and what was expected (strict mode, the default), or is skipped and
  counted in ``Capture.skipped_rows`` (lenient mode). Nothing is dropped silently.
* One exact path for every text format. The line-exact path tokenises the whole file
  with numpy (separator positions -> token offsets -> one Arrow string array), so line
  numbers are exact even with blank lines or CRLF endings, and the HCRL formats (whose
  rows have a variable number of fields) use it as their main, still vectorised, path.

Formats (``fmt``):

``"ctt"``
    can-train-and-test v1.5: header ``timestamp,arbitration_id,data_field,attack``, ID in
    hex, payload one hex string of 0-16 digits (DLC = digits / 2), attack 0/1. Also
    ``.csv.gz`` and ``.parquet`` with the same columns.
``"hcrl_ch"``
    HCRL Car-Hacking CSV, headerless: ``Timestamp,CAN ID,DLC,DATA[0..DLC-1],Flag``; rows
    with DLC < 8 are shorter and the flag (R normal / T injected) sits at DATA[DLC].
``"hcrl_ch_txt"``
    Car-Hacking ``normal_run_data.txt``: ``Timestamp: <s> ID: <hex> <rtr> DLC: <n> <bytes>``;
    every frame is normal.
``"hcrl_sa"``
    HCRL survival-analysis text: ``timestamp,CAN ID,DLC,byte0..byte(DLC-1)[,flag]``; the
    flag (R/T or 0/1) is present in attack files only, absent means all frames normal.

Labels are accepted as ``0``/``1`` or ``R``/``T`` (case-insensitive) in every format.

Timestamp order (``timestamp_order``), the same for every format:

``"strict"`` (default)
    A frame stamped earlier than any frame before it is a bad row: an error naming file,
    line and value in strict mode, dropped and counted in lenient mode.
``"sort"``
    Opt-in, per dataset via the catalog. can-train-and-test stamps some injected frames
    slightly ahead of the normal frames that follow them, so timestamps go back by up to
    ~100 us at a few places; reading such a file strictly fails, and dropping the rows
    loses attack frames. ``"sort"`` keeps every frame and stable-sorts the capture by
    timestamp; the number of rows that were out of order is in
    ``Capture.meta["reordered_rows"]``. A jump back by more than ``max_backwards_s``
    (default 10 ms) is still a bad row as above, because that is a corrupted or
    concatenated file, not stamping jitter.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from canids.data.frames import MAX_CAN_ID, Capture

__all__ = [
    "DEFAULT_MAX_BACKWARDS_S",
    "FORMATS",
    "TIMESTAMP_ORDERS",
    "DataFormatError",
    "attack_type_from_name",
    "capture_name",
    "detect_format",
    "read_capture",
]

#: Format names accepted by ``read_capture``; ``None`` or ``"auto"`` means detect.
FORMATS: tuple[str, ...] = ("ctt", "hcrl_ch", "hcrl_ch_txt", "hcrl_sa")

#: ``timestamp_order`` values accepted by ``read_capture`` (and the catalog).
TIMESTAMP_ORDERS: tuple[str, ...] = ("strict", "sort")

#: Largest backward timestamp jump, in seconds, that ``timestamp_order="sort"`` repairs.
DEFAULT_MAX_BACKWARDS_S = 0.01

#: can-train-and-test column names, in file order.
CTT_COLUMNS: tuple[str, ...] = ("timestamp", "arbitration_id", "data_field", "attack")

#: File name endings stripped to get the capture name (longest first).
CAPTURE_SUFFIXES: tuple[str, ...] = (".csv.gz", ".txt.gz", ".csv", ".parquet", ".txt", ".gz")

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 1 << 16
_MAX_SHOWN = 120  # characters of an offending value or line quoted in a message


# --------------------------------------------------------------------------- errors


class DataFormatError(ValueError):
    """A raw capture that cannot be read as the expected format.

    Attributes:
        path: the file.
        line: 1-based line number (the header counts as line 1); for parquet the 1-based
            row number; ``None`` for problems with the file as a whole (empty, unknown
            format, wrong columns).
        value: the offending text (a field, a line or a header), or ``None``.
    """

    def __init__(self, message: str, *, path: str | Path, line: int | None = None, value: str | None = None):
        super().__init__(message)
        self.path = str(path)
        self.line = line
        self.value = value

    def __reduce__(self):  # keep the attributes when pickled across processes
        return (_rebuild_error, (str(self), self.path, self.line, self.value))


def _rebuild_error(message: str, path: str, line: int | None, value: str | None) -> DataFormatError:
    return DataFormatError(message, path=path, line=line, value=value)


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _row_error(path: Path, where: str, line: int, what: str, value: str, expected: str) -> DataFormatError:
    """Build the standard message: file, line, offending value, what was expected."""
    shown = _shorten(value)
    return DataFormatError(
        f"{path}, {where} {line}: bad {what} {shown!r}; expected {expected}",
        path=path,
        line=line,
        value=value,
    )


# --------------------------------------------------------------------- names / types


def capture_name(path: str | Path) -> str:
    """File name without its capture suffix (``DoS-3.csv.gz`` -> ``DoS-3``)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in CAPTURE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


#: Ordered (substring(s), family) rules; the first rule whose substrings all occur wins.
_ATTACK_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("targeted", "fuzz"), "targeted_fuzzing"),
    (("fuzz",), "fuzzing"),
    (("dos",), "dos"),
    (("flood",), "dos"),
    (("rpm",), "spoofing"),
    (("gear",), "spoofing"),
    (("spoof",), "spoofing"),
    (("malfunction",), "malfunction"),
    (("suppress",), "suppress"),
    (("masquerade",), "masquerade"),
    (("systematic",), "systematic"),
    (("attack-free",), "normal"),
    (("attack_free",), "normal"),
    (("accessory",), "normal"),
    (("normal",), "normal"),
    (("driving",), "normal"),
    (("free",), "normal"),
)


def attack_type_from_name(stem: str) -> str:
    """Canonical, lower-case attack family of a capture, inferred from its file stem.

    Per-attack-type metrics need one family name across datasets whose files are named
    differently (``DoS-3``, ``DoS_dataset``, ``Flooding_...``). Rules, first match wins,
    matching is case-insensitive on substrings:

    =========================================  ====================
    stem contains                              family
    =========================================  ====================
    ``targeted`` and ``fuzz``                  ``targeted_fuzzing``
    ``fuzz`` (``fuzzing-kia``, ``Fuzzy_...``)  ``fuzzing``
    ``dos`` or ``flood``                       ``dos``
    ``rpm``, ``gear`` or ``spoof``             ``spoofing``
    ``malfunction``                            ``malfunction``
    ``suppress``                               ``suppress``
    ``masquerade``                             ``masquerade``
    ``systematic``                             ``systematic``
    ``attack-free``, ``attack_free``,
    ``accessory``, ``normal``, ``driving``,
    ``free``                                   ``normal``
    =========================================  ====================

    Anything else: the stem's leading alphabetic token, lower-cased (``force-neutral-1``
    -> ``force``); a stem with no letters at all -> ``"unknown"``.
    """
    lower = capture_name(stem).lower()
    for needles, family in _ATTACK_RULES:
        if all(needle in lower for needle in needles):
            return family
    match = re.search(r"[a-z]+", lower)
    return match.group(0) if match else "unknown"


# ------------------------------------------------------------------ format detection


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"capture file not found: {path}")
    if not path.is_file():
        raise DataFormatError(f"{path}: not a regular file", path=path)


def _head_bytes(path: Path, size: int = _SNIFF_BYTES) -> bytes:
    """First bytes of a file, transparently decompressed if it is gzip."""
    with open(path, "rb") as handle:
        head = handle.read(size)
    if head.startswith(_GZIP_MAGIC):
        with gzip.open(path, "rb") as handle:
            try:
                head = handle.read(size)
            except (OSError, EOFError) as exc:
                raise DataFormatError(f"{path}: unreadable gzip data ({exc})", path=path) from exc
    return head


def _first_lines(head: bytes, count: int) -> list[str]:
    """Up to ``count`` non-blank lines from the start of ``head`` (the last may be cut off)."""
    text = head.decode("ascii", errors="replace")
    out: list[str] = []
    for line in text.split("\n", 64 * count):
        line = line.strip()
        if line:
            out.append(line)
            if len(out) == count:
                break
    return out


def _looks_hcrl_row(line: str) -> tuple[bool, bool, str]:
    """(is an HCRL comma row, has a flag column, flag value) for one sniffed line."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) < 3 or not _is_float(parts[0]) or not _HEX_ID.fullmatch(parts[1]):
        return False, False, ""
    if not parts[2].isdigit() or int(parts[2]) > 8:
        return False, False, ""
    dlc = int(parts[2])
    if len(parts) == dlc + 4:
        return True, True, parts[-1].upper()
    return (len(parts) == dlc + 3), False, ""


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def detect_format(path: str | Path) -> str:
    """Name of the format of ``path`` (one of ``FORMATS``), from its extension and first lines.

    Detection exists so users can point the catalog at original HCRL downloads without
    converting them. Rules: ``.parquet`` -> ``ctt``; a can-train-and-test header -> ``ctt``;
    lines starting ``Timestamp:`` -> ``hcrl_ch_txt``; headerless ``ts,id,dlc,bytes...`` rows
    -> ``hcrl_ch`` when every sniffed row ends in an R/T flag and the file is not ``.txt``,
    else ``hcrl_sa``. Raises ``FileNotFoundError`` for a missing file and
    ``DataFormatError`` for an empty or unrecognised one.
    """
    path = Path(path)
    _check_exists(path)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == _PARQUET_MAGIC or path.name.lower().endswith(".parquet"):
        return "ctt"
    lines = _first_lines(_head_bytes(path), 5)
    if not lines:
        raise DataFormatError(f"{path}: empty file, no frames", path=path)
    first = lines[0]
    if _is_ctt_header(first):
        return "ctt"
    if first.lower().startswith("timestamp:"):
        return "hcrl_ch_txt"
    rows = [_looks_hcrl_row(line) for line in lines[:-1] or lines]  # last sniffed line may be cut
    if rows and all(ok for ok, _, _ in rows):
        is_txt = path.name.lower().endswith((".txt", ".txt.gz"))
        if all(flag and value in ("R", "T") for _, flag, value in rows) and not is_txt:
            return "hcrl_ch"
        return "hcrl_sa"
    raise DataFormatError(
        f"{path}, line 1: unrecognised CAN capture format, first line {_shorten(first)!r}; expected one of: "
        f"a can-train-and-test header '{','.join(CTT_COLUMNS)}' (ctt), "
        "'Timestamp: <s> ID: <hex> <rtr> DLC: <n> <bytes>' (hcrl_ch_txt), or headerless "
        "'timestamp,CAN ID,DLC,byte0..,flag' rows (hcrl_ch / hcrl_sa)",
        path=path,
        line=1,
        value=first,
    )


def _is_ctt_header(line: str) -> bool:
    return [p.strip().lower() for p in line.split(",")] == list(CTT_COLUMNS)


# --------------------------------------------------------------------- public reader


def read_capture(
    path: str | Path,
    fmt: str | None = None,
    *,
    split: str = "",
    strict: bool = True,
    timestamp_order: str = "strict",
    max_backwards_s: float = DEFAULT_MAX_BACKWARDS_S,
) -> Capture:
    """Read one raw capture file into a ``Capture``.

    Args:
        path: the file (``.csv``, ``.csv.gz``, ``.parquet``, ``.txt``).
        fmt: one of ``FORMATS``; ``None`` or ``"auto"`` detects it (``detect_format``).
        split: split directory the file belongs to, recorded on the capture.
        strict: raise ``DataFormatError`` at the first bad row (default). With
            ``strict=False`` bad rows are skipped and counted in ``skipped_rows``
            (per-reason counts in ``meta["skipped_by_reason"]``).
        timestamp_order: ``"strict"`` (default): a frame whose timestamp goes back in
            time is a bad row (error in strict mode, dropped in lenient mode).
            ``"sort"``: frames going back by at most ``max_backwards_s`` are kept and the
            capture is stable-sorted by timestamp; ``meta["reordered_rows"]`` counts the
            rows that were out of order (earlier than some frame before them). A larger
            backward jump is still a bad row.
        max_backwards_s: tolerated backward jump in seconds with ``timestamp_order="sort"``
            (ignored with ``"strict"``); ``math.inf`` sorts whatever the jump.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown ``fmt`` or ``timestamp_order``, or a negative/NaN ``max_backwards_s``.
        DataFormatError: bad content; also in lenient mode when no frame is left.
    """
    path = Path(path)
    order = _order_policy(timestamp_order, max_backwards_s)
    _check_exists(path)
    if fmt in (None, "auto"):
        fmt = detect_format(path)
    if fmt not in _READERS:
        raise ValueError(f"unknown capture format {fmt!r} for {path}; expected one of {', '.join(FORMATS)} or 'auto'")
    raw = path.read_bytes()
    frames = _READERS[fmt](path, raw, strict, order)
    meta: dict = {"format": fmt}
    if frames.skipped:
        meta["skipped_by_reason"] = frames.skipped_by_reason
    if order.sort:
        meta["reordered_rows"] = _sort_by_time(frames)
    name = capture_name(path)
    return Capture(
        timestamp=frames.timestamp,
        can_id=frames.can_id,
        dlc=frames.dlc,
        payload=frames.payload,
        label=frames.label,
        name=name,
        split=split,
        attack_type=attack_type_from_name(name),
        source=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
        skipped_rows=frames.skipped,
        meta=meta,
    )


@dataclass(frozen=True)
class _Order:
    """Timestamp-order policy: ``sort`` repairs backward jumps of at most ``max_back`` seconds."""

    sort: bool = False
    max_back: float = 0.0


_STRICT_ORDER = _Order()


def _order_policy(timestamp_order: str, max_backwards_s: float) -> _Order:
    if timestamp_order not in TIMESTAMP_ORDERS:
        raise ValueError(f"unknown timestamp_order {timestamp_order!r}; expected one of {', '.join(TIMESTAMP_ORDERS)}")
    if timestamp_order == "strict":
        return _STRICT_ORDER
    try:
        max_back = float(max_backwards_s)
    except (TypeError, ValueError):
        max_back = float("nan")
    if not max_back >= 0:  # also rejects NaN
        raise ValueError(f"max_backwards_s must be a number of seconds >= 0, got {max_backwards_s!r}")
    return _Order(sort=True, max_back=max_back)


def _sort_by_time(frames: "_Frames") -> int:
    """Stable-sort ``frames`` by timestamp in place; return how many rows were out of order.

    A row is out of order when an earlier row has a later timestamp (the rows strict
    order would reject). The common, already ordered, capture costs one comparison pass.
    """
    ts = frames.timestamp
    if len(ts) < 2 or not (ts[1:] < ts[:-1]).any():
        return 0
    run_max = np.maximum.accumulate(ts)
    reordered = int(np.count_nonzero(ts[1:] < run_max[:-1]))
    index = np.argsort(ts, kind="stable")
    frames.timestamp = ts[index]
    frames.can_id = frames.can_id[index]
    frames.dlc = frames.dlc[index]
    frames.payload = frames.payload[index]
    frames.label = frames.label[index]
    return reordered


# ------------------------------------------------------------ decoded frames + checks


@dataclass
class _Frames:
    """Decoded, validated columns of one file (what ``Capture`` is built from)."""

    timestamp: np.ndarray
    can_id: np.ndarray
    dlc: np.ndarray
    payload: np.ndarray
    label: np.ndarray
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass
class _Check:
    what: str  # the field, e.g. "arbitration_id"
    expected: str
    value_of: Callable[[int], str]  # offending text of row i
    expected_of: Callable[[int], str] | None = None  # row-specific expectation, if any

    def error(self, path: Path, where: str, line: int, row: int) -> DataFormatError:
        expected = self.expected_of(row) if self.expected_of is not None else self.expected
        return _row_error(path, where, line, self.what, self.value_of(row), expected)


class _Checks:
    """Per-row first-failure codes: code k means ``checks[k-1]`` was the first to fail.

    Checks are added in priority order, so a row's code names the most basic problem
    (a row with too few fields is reported as such, not as a bad ID).
    """

    def __init__(self, n: int):
        self.code = np.zeros(n, np.uint8)
        self.checks: list[_Check] = []

    def add(
        self,
        bad: np.ndarray,
        what: str,
        expected: str,
        value_of: Callable[[int], str],
        expected_of: Callable[[int], str] | None = None,
    ) -> None:
        self.checks.append(_Check(what, expected, value_of, expected_of))
        if bad.any():
            self.code[bad & (self.code == 0)] = len(self.checks)

    @property
    def ok(self) -> np.ndarray:
        return self.code == 0

    def any_bad(self) -> bool:
        return bool(self.code.any())

    def first_error(self, path: Path, lines: np.ndarray, where: str) -> DataFormatError:
        row = int(np.flatnonzero(self.code)[0])
        return self.checks[self.code[row] - 1].error(path, where, int(lines[row]), row)

    def counts(self) -> dict[str, int]:
        per_code = np.bincount(self.code, minlength=len(self.checks) + 1)
        out: dict[str, int] = {}
        for index, check in enumerate(self.checks, start=1):
            if per_code[index]:
                out[check.what] = out.get(check.what, 0) + int(per_code[index])
        return out


def _values_of(arr: pa.Array | pa.ChunkedArray) -> Callable[[int], str]:
    def value_of(i: int) -> str:
        value = arr[i].as_py()
        return "<missing>" if value is None else str(value)

    return value_of


def _add_order_check(
    checks: _Checks,
    ts: np.ndarray,
    lines: np.ndarray | None,
    ts_text: Callable[[int], str],
    order: _Order = _STRICT_ORDER,
) -> None:
    """Flag frames that go back in time relative to every earlier valid frame.

    Using the running maximum (not just the previous row) keeps the lenient output
    non-decreasing even after a frame stamped far in the future; the rows dropped are
    the ones that go backwards, as required. Added last: only otherwise valid rows count.
    With ``order.sort`` only jumps back by more than ``order.max_back`` are flagged
    (smaller ones are sorted out later by ``_sort_by_time``).
    """
    ok_rows = np.flatnonzero(checks.ok)
    t = ts[ok_rows]
    run_max = np.maximum.accumulate(t) if len(t) else t
    if order.sort:
        back = np.flatnonzero(run_max[:-1] - t[1:] > order.max_back) + 1
    else:
        back = np.flatnonzero(t[1:] < run_max[:-1]) + 1
    bad = np.zeros(len(ts), bool)
    bad[ok_rows[back]] = True

    def expected_of(row: int) -> str:
        pos = int(np.searchsorted(ok_rows, row))
        prev = float(run_max[pos - 1])
        prev_row = int(ok_rows[np.searchsorted(run_max, prev)])
        where = f" at line {int(lines[prev_row])}" if lines is not None else ""
        if order.sort:
            return (
                f"a timestamp >= {prev!r} - {order.max_back!r} s (the frame{where}): with timestamp_order='sort' "
                f"frames may go back at most {order.max_back!r} s, this one goes back {prev - float(ts[row]):.6g} s "
                "(a corrupted or concatenated file?)"
            )
        return f"a timestamp >= {prev!r} (the frame{where}): timestamps must not decrease within a capture"

    checks.add(bad, "timestamp (goes back in time)", "non-decreasing timestamps", ts_text, expected_of)


def _materialise(
    path: Path,
    checks: _Checks,
    lines: np.ndarray,
    where: str,
    strict: bool,
    ts: np.ndarray,
    ids: np.ndarray,
    dlc: np.ndarray,
    payload: np.ndarray,
    labels: np.ndarray,
) -> _Frames:
    """Raise on the first bad row (strict) or drop and count bad rows (lenient)."""
    if len(ts) == 0:
        raise DataFormatError(f"{path}: no frames (the file has no data rows)", path=path)
    keep = None
    if checks.any_bad():
        if strict:
            raise checks.first_error(path, lines, where)
        keep = checks.ok
        if not keep.any():
            first = checks.first_error(path, lines, where)
            raise DataFormatError(
                f"{path}: no frames left, all {len(ts)} rows are invalid; first problem: {first}",
                path=path,
                line=first.line,
                value=first.value,
            )
        ts, ids, dlc, payload, labels = (a[keep] for a in (ts, ids, dlc, payload, labels))
    return _Frames(
        _owned(ts, np.float64),
        _owned(ids, np.int32),
        _owned(dlc, np.uint8),
        np.ascontiguousarray(payload, dtype=np.uint8),
        _owned(labels, np.uint8),
        skipped=0 if keep is None else int((~keep).sum()),
        skipped_by_reason={} if keep is None else checks.counts(),
    )


def _owned(arr: np.ndarray, dtype: type) -> np.ndarray:
    """A writeable array of ``dtype`` that owns its memory (Arrow buffers are read-only)."""
    out = np.asarray(arr, dtype=dtype)
    if not out.flags.writeable or not out.flags.owndata:
        out = out.copy()
    return out


# ----------------------------------------------------------------- column decoders

_HEX_ID = re.compile(r"[0-9A-Fa-f]{1,8}")
_NUMBER_RE = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"
_LABELS = {"0": 0, "1": 1, "R": 0, "T": 1}
_HEX_DIGITS = "0123456789abcdefABCDEF"


def _build_hex_nibble_table() -> np.ndarray:
    """int64[256]: ASCII hex digit -> value, -1 if not a hex digit."""
    nibble = np.full(256, -1, np.int64)
    for ch in _HEX_DIGITS:
        nibble[ord(ch)] = int(ch, 16)
    return nibble


_HEX_NIBBLE = _build_hex_nibble_table()


def _build_hex_pair_table() -> np.ndarray:
    """int16[65536]: little-endian pair of ASCII hex digits -> byte value, -1 if not hex.

    Decoding two characters per lookup halves the gathers compared with a per-nibble
    table, and invalid characters fall out of the same lookup (validation for free).
    """
    nibble = _HEX_NIBBLE
    codes = np.arange(1 << 16)
    high = nibble[codes & 0xFF]  # first character is the low byte in little-endian
    low = nibble[codes >> 8]
    return np.where((high >= 0) & (low >= 0), high * 16 + low, -1).astype(np.int16)


_HEX_PAIR = _build_hex_pair_table()


def _as_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        if col.num_chunks == 0:
            return pa.array([], col.type)
        if pa.types.is_dictionary(col.type):
            col = col.unify_dictionaries()
            indices = pa.concat_arrays([c.indices for c in col.chunks])
            return pa.DictionaryArray.from_arrays(indices, col.chunk(0).dictionary)
        return col.combine_chunks()
    return col


def _bool_np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _dict_lookup(col: pa.Array | pa.ChunkedArray, decode: Callable[[str], int]) -> np.ndarray:
    """Decode a low-cardinality string column via its dictionary: one Python call per distinct value.

    Returns int64 values, -1 where ``decode`` rejects the value or it is missing.
    """
    arr = _as_array(col)
    if not pa.types.is_dictionary(arr.type):
        arr = _as_array(pc.dictionary_encode(arr))
    table = np.array([decode(v) for v in arr.dictionary.to_pylist()] + [-1], np.int64)
    indices = pc.fill_null(arr.indices, len(table) - 1).to_numpy(zero_copy_only=False)
    return table[indices]


def _decode_hex_id(text: str | None) -> int:
    if text is None:
        return -1
    text = text.strip()
    if not _HEX_ID.fullmatch(text):
        return -1
    value = int(text, 16)
    return value if value <= MAX_CAN_ID else -1


def _decode_label(text: str | None) -> int:
    return -1 if text is None else _LABELS.get(text.strip().upper(), -1)


def _decode_dlc(text: str | None) -> int:
    if text is None:
        return -1
    text = text.strip()
    return int(text) if text.isdigit() and int(text) <= 8 else -1


def _ids(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """CAN ids (int64) and a bad-row mask; hex strings or integer columns (parquet).

    Real files write every id with the same number of digits (3 in can-train-and-test,
    4 in HCRL), so the common case is decoded straight from the string bytes; anything
    else goes through the column's dictionary (one Python call per distinct id).
    """
    if pa.types.is_integer(col.type):
        values = pc.fill_null(col, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return values, (values < 0) | (values > MAX_CAN_ID)
    arr = _as_array(col)
    if (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)) and arr.null_count == 0 and len(arr):
        offsets, _ = _string_bytes(arr)
        width = int(offsets[1] - offsets[0])
        chars = _fixed_width(arr, width) if 1 <= width <= 7 else None
        if chars is not None:
            nibbles = _HEX_NIBBLE[chars]
            if nibbles.min() >= 0:
                values = nibbles @ (16 ** np.arange(width - 1, -1, -1, dtype=np.int64))
                return values, np.zeros(len(values), bool)
    values = _dict_lookup(arr, _decode_hex_id)
    return values, values < 0


def _labels(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    if pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
        values = pc.fill_null(pc.cast(col, pa.int64()), -1).to_numpy(zero_copy_only=False)
        return values, (values != 0) & (values != 1)
    values = _dict_lookup(col, _decode_label)
    return values, values < 0


def _timestamps(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """float64 seconds and a bad-row mask (missing, not a number, or not finite)."""
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
        values = pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        return values, ~np.isfinite(values)
    text = pc.utf8_trim_whitespace(col)
    valid = _bool_np(pc.match_substring_regex(text, _NUMBER_RE))
    safe = pc.if_else(pa.array(valid), text, "0") if not valid.all() else text
    values = pc.cast(safe, pa.float64()).to_numpy(zero_copy_only=False)
    return values, ~valid | ~np.isfinite(values)


def _string_bytes(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets relative to the first value, data bytes) of a string array, zero-copy."""
    n = len(arr)
    offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], offset_type)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    start = int(offsets[0])
    return offsets - start, data[start : int(offsets[-1])]


def _fixed_width(arr: pa.Array, width: int) -> np.ndarray | None:
    """(n, width) view of the bytes of a string array if every value has ``width`` bytes, else None."""
    n = len(arr)
    if n == 0:
        return np.zeros((0, width), np.uint8)
    offsets, data = _string_bytes(arr)
    if len(data) != n * width or (width and np.diff(offsets).min() != width):
        return None
    return data.reshape(n, width)


def _decode_hex_strings(col: pa.Array | pa.ChunkedArray, max_digits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hex strings of 0..max_digits digits -> (bytes (n, max_digits/2), digit count, bad mask).

    Strings are right-padded with '0' to a fixed width so the whole column becomes one
    contiguous byte buffer, decoded two characters at a time by table lookup. Rows that
    cannot be padded (missing, too long, non-ASCII) are blanked first and marked bad.
    """
    arr = _as_array(col)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.large_string())
    n = len(arr)
    lengths = pc.fill_null(pc.binary_length(arr), max_digits + 1).to_numpy(zero_copy_only=False)
    unusable = lengths > max_digits
    if unusable.any():
        arr = pc.if_else(pa.array(unusable), pa.scalar("", arr.type), arr)
    chars = _fixed_width(pc.utf8_rpad(arr, max_digits, "0"), max_digits)
    if chars is None:  # multi-byte characters made some padded values longer
        unusable |= ~_bool_np(pc.string_is_ascii(arr))
        arr = pc.if_else(pa.array(unusable), pa.scalar("", arr.type), arr)
        chars = _fixed_width(pc.utf8_rpad(arr, max_digits, "0"), max_digits)
    values = _HEX_PAIR[chars.view("<u2")]
    bad = unusable | (lengths % 2 == 1)
    if values.min(initial=0) < 0:
        bad |= (values < 0).any(axis=1)
    return values.astype(np.uint8), lengths, bad


def _decode_ctt_payload(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    payload, digits, bad = _decode_hex_strings(col, 16)
    dlc = np.where(bad, 0, digits // 2).astype(np.uint8)
    return payload, dlc, bad


# ------------------------------------------------------------ line-exact tokeniser


@dataclass
class _Rows:
    """Non-blank lines of a text file split into tokens, with exact 1-based line numbers."""

    tokens: pa.Array  # large_string, whitespace-trimmed, all rows' tokens in order
    first: np.ndarray  # index of each row's first token
    count: np.ndarray  # tokens per row
    line: np.ndarray  # 1-based line number of each row
    text_of: Callable[[int], str]  # full text of row i (for messages)

    def __len__(self) -> int:
        return len(self.first)

    def column(self, j: int | np.ndarray) -> pa.Array:
        """Token ``j`` of every row (row's first token where it has fewer; callers flag those)."""
        index = self.first + j
        index = np.where(j < self.count, index, self.first)
        return self.tokens.take(pa.array(index))

    def drop_first(self) -> "_Rows":
        return _Rows(self.tokens, self.first[1:], self.count[1:], self.line[1:], lambda i: self.text_of(i + 1))


def _tokenise(data: bytes, sep: bytes | None, original: bytes | None = None) -> _Rows:
    """Split ``data`` into lines and (if ``sep``) fields, fully vectorised.

    Separator positions give token spans; deleting the separators (and the CR of CRLF
    endings) leaves the tokens back to back, so their offsets are a cumulative sum of
    lengths and one Arrow string array holds them all. Non-ASCII bytes become '?', which
    every field check rejects, so such rows are reported rather than mis-decoded.
    ``original`` (same lines, e.g. before whitespace squeezing) is what messages quote.
    """
    buf = np.frombuffer(data, np.uint8)
    if buf.size and (buf >= 0x80).any():
        buf = np.where(buf >= 0x80, np.uint8(ord("?")), buf)
    is_sep = buf == 10
    if sep is not None:
        is_sep |= buf == sep[0]
    sep_pos = np.flatnonzero(is_sep)
    starts = np.concatenate(([0], sep_pos + 1))
    ends = np.concatenate((sep_pos, [len(buf)]))
    ends_line = np.concatenate((buf[sep_pos] == 10, [True]))  # token ends a line
    has_cr = ends_line & (ends > starts)
    has_cr[has_cr] = buf[ends[has_cr] - 1] == 13
    ends = ends - has_cr
    removed = np.concatenate((sep_pos, ends[has_cr]))
    joined = np.delete(buf, removed) if removed.size else buf
    offsets = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(ends - starts, out=offsets[1:])
    tokens = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(joined)))
    tokens = pc.utf8_trim_whitespace(tokens)

    token_line = np.concatenate(([0], np.cumsum(buf[sep_pos] == 10)))
    count = np.bincount(token_line, minlength=int(token_line[-1]) + 1)
    first = np.concatenate(([0], np.cumsum(count)[:-1]))
    single = np.flatnonzero(count == 1)
    blank = np.zeros(len(count), bool)
    if single.size:
        single_len = pc.binary_length(tokens.take(pa.array(first[single]))).to_numpy(zero_copy_only=False)
        blank[single[single_len == 0]] = True
    rows = np.flatnonzero(~blank)
    quoted = buf if original is None else np.frombuffer(original, np.uint8)
    nl_pos = np.flatnonzero(quoted == 10)

    def text_of(i: int) -> str:
        line_index = int(rows[i])
        start = int(nl_pos[line_index - 1]) + 1 if line_index > 0 else 0
        stop = int(nl_pos[line_index]) if line_index < len(nl_pos) else len(quoted)
        return bytes(quoted[start:stop]).decode("utf-8", errors="replace").rstrip("\r")

    return _Rows(tokens, first[rows], count[rows], rows + 1, text_of)


# --------------------------------------------------------------------- ctt reader


def _decompress(path: Path, raw: bytes) -> bytes:
    if raw.startswith(_GZIP_MAGIC):
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"{path}: unreadable gzip data ({exc})", path=path) from exc
    return raw


def _read_ctt(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    if raw.startswith(_PARQUET_MAGIC) or path.name.lower().endswith(".parquet"):
        return _read_ctt_parquet(path, raw, strict, order)
    data = _decompress(path, raw)
    frames = _read_ctt_fast(data, order)
    if frames is not None:
        return frames
    return _read_ctt_exact(path, data, strict, order)


_Column = pa.Array | pa.ChunkedArray


def _ctt_checks(
    checks: _Checks,
    ts_col: _Column,
    id_col: _Column,
    data_col: _Column,
    label_col: _Column,
    value_cols: Sequence[_Column],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode and validate the four ctt columns into ``checks``; returns (ts, ids, dlc, payload, labels)."""
    ts, bad_ts = _timestamps(ts_col)
    checks.add(bad_ts, "timestamp", "a finite number of seconds", _values_of(value_cols[0]))
    ids, bad_id = _ids(id_col)
    checks.add(bad_id, "arbitration_id", f"1-8 hex digits, at most 0x{MAX_CAN_ID:X}", _values_of(value_cols[1]))
    payload, dlc, bad_payload = _decode_ctt_payload(data_col)
    checks.add(
        bad_payload,
        "data_field",
        "an even number (0-16) of hex digits, i.e. at most 8 payload bytes",
        _values_of(value_cols[2]),
    )
    labels, bad_label = _labels(label_col)
    checks.add(bad_label, "attack label", "0 or 1 (or R/T)", _values_of(value_cols[3]))
    return ts, ids, dlc, payload, labels


def _read_ctt_fast(data: bytes, order: _Order = _STRICT_ORDER) -> _Frames | None:
    """Typed pyarrow parse; ``None`` whenever anything looks wrong (the exact path then explains).

    Single-threaded on purpose: the workflow parallelises over files and jobs, and the
    benchmark measures one core.
    """
    newline = data.find(b"\n")
    header = (data if newline < 0 else data[:newline]).decode("ascii", errors="replace")
    if not _is_ctt_header(header):
        return None
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(
                use_threads=False, column_names=list(CTT_COLUMNS), skip_rows=1, block_size=1 << 26
            ),
            parse_options=pacsv.ParseOptions(quote_char=False, escape_char=False, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={
                    "timestamp": pa.float64(),
                    "arbitration_id": pa.string(),
                    "data_field": pa.string(),
                    "attack": pa.int8(),  # R/T or junk fail here; the exact path handles them
                },
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows == 0:
        return None
    cols = [table.column(name) for name in CTT_COLUMNS]
    checks = _Checks(table.num_rows)
    ts, ids, dlc, payload, labels = _ctt_checks(checks, *cols, value_cols=cols)
    _add_order_check(checks, ts, None, lambda i: repr(float(ts[i])), order)
    if checks.any_bad():
        return None
    return _materialise(Path(), checks, np.zeros(0), "line", True, ts, ids, dlc, payload, labels)


def _read_ctt_exact(path: Path, data: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    """Line-exact ctt parse: every problem is reported with its true line number."""
    rows = _tokenise(data, b",")
    if len(rows) == 0:
        raise DataFormatError(f"{path}: empty file, no frames", path=path)
    header = rows.text_of(0)
    if not _is_ctt_header(header):
        raise DataFormatError(
            f"{path}, line {int(rows.line[0])}: bad header {_shorten(header)!r}; expected '{','.join(CTT_COLUMNS)}'",
            path=path,
            line=int(rows.line[0]),
            value=header,
        )
    rows = rows.drop_first()
    checks = _Checks(len(rows))
    checks.add(
        rows.count != 4,
        "row",
        f"4 comma-separated fields ({','.join(CTT_COLUMNS)})",
        rows.text_of,
        lambda i: f"4 comma-separated fields ({','.join(CTT_COLUMNS)}), got {int(rows.count[i])}",
    )
    cols = [rows.column(j) for j in range(4)]
    ts, ids, dlc, payload, labels = _ctt_checks(checks, *cols, value_cols=cols)
    _add_order_check(checks, ts, rows.line, _values_of(cols[0]), order)
    return _materialise(path, checks, rows.line, "line", strict, ts, ids, dlc, payload, labels)


def _read_ctt_parquet(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(raw), use_threads=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(f"{path}: unreadable parquet file ({exc})", path=path) from exc
    missing = [c for c in CTT_COLUMNS if c not in table.column_names]
    if missing:
        raise DataFormatError(
            f"{path}: parquet columns {table.column_names}; expected columns {', '.join(CTT_COLUMNS)} "
            f"(missing {', '.join(missing)})",
            path=path,
            value=",".join(table.column_names),
        )
    cols = [table.column(name) for name in CTT_COLUMNS]
    id_col = cols[1]
    if not (pa.types.is_integer(id_col.type) or pa.types.is_string(id_col.type) or pa.types.is_large_string(id_col.type)):
        id_col = pc.cast(id_col, pa.string())
    checks = _Checks(table.num_rows)
    ts, ids, dlc, payload, labels = _ctt_checks(checks, cols[0], id_col, cols[2], cols[3], value_cols=cols)
    rows = np.arange(1, table.num_rows + 1)
    _add_order_check(checks, ts, rows, _values_of(cols[0]), order)
    return _materialise(path, checks, rows, "row", strict, ts, ids, dlc, payload, labels)


# -------------------------------------------------------------------- hcrl readers


def _decode_byte_columns(rows: _Rows, dlc: np.ndarray, first_byte: int) -> tuple[np.ndarray, np.ndarray]:
    """Payload from one token per byte (``6f``), bytes ``first_byte..first_byte+dlc-1`` of each row."""
    n = len(rows)
    payload = np.zeros((n, 8), np.uint8)
    bad = np.zeros(n, bool)
    for j in range(8):
        present = dlc > j
        if not present.any():
            break
        tokens = rows.column(first_byte + j)
        tokens = pc.if_else(pa.array(present), tokens, pa.scalar("00", tokens.type))
        tokens = pc.utf8_lpad(tokens, 2, "0")  # a lone digit '5' means 0x05
        values, _, bad_j = _decode_hex_strings(tokens, 2)
        payload[:, j] = np.where(present, values[:, 0], 0)
        bad |= present & bad_j
    return payload, bad


def _read_hcrl_csv(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER, *, flag: str) -> _Frames:
    """Shared parser for ``hcrl_ch`` (flag required) and ``hcrl_sa`` (flag optional per file)."""
    data = _decompress(path, raw)
    rows = _tokenise(data, b",")
    if len(rows) == 0:
        raise DataFormatError(f"{path}: empty file, no frames", path=path)
    n = len(rows)
    checks = _Checks(n)
    text_of = rows.text_of
    checks.add(rows.count < 3, "row", "comma-separated 'timestamp,CAN ID,DLC,bytes...,flag'", text_of)
    ts_tok, id_tok, dlc_tok = rows.column(0), rows.column(1), rows.column(2)
    ts, bad_ts = _timestamps(ts_tok)
    checks.add(bad_ts, "timestamp", "a finite number of seconds", _values_of(ts_tok))
    ids, bad_id = _ids(id_tok)
    checks.add(bad_id, "CAN ID", f"1-8 hex digits, at most 0x{MAX_CAN_ID:X}", _values_of(id_tok))
    dlc_raw = _dict_lookup(dlc_tok, _decode_dlc)
    checks.add(dlc_raw < 0, "DLC", "an integer 0..8", _values_of(dlc_tok))
    dlc = np.where(dlc_raw < 0, 0, dlc_raw)
    has_flag = _has_flag(rows, dlc, checks.ok) if flag == "optional" else True
    expected_count = dlc + 3 + int(has_flag)
    shape = "timestamp,CAN ID,DLC,DLC bytes" + (",flag" if has_flag else "")
    checks.add(
        rows.count != expected_count,
        "row",
        f"{3 + int(has_flag)} + DLC comma-separated fields ({shape})",
        text_of,
        lambda i: f"{3 + int(has_flag)} + DLC = {int(expected_count[i])} comma-separated fields ({shape}), "
        f"got {int(rows.count[i])}",
    )
    payload, bad_payload = _decode_byte_columns(rows, dlc, 3)
    checks.add(bad_payload, "data byte", "DLC payload bytes of 1-2 hex digits each", text_of)
    if has_flag:
        flag_tok = rows.column(3 + dlc)
        labels, bad_label = _labels(flag_tok)
        checks.add(bad_label, "flag", "R or T (or 0/1)", _values_of(flag_tok))
    else:
        labels = np.zeros(n, np.int64)
    _add_order_check(checks, ts, rows.line, _values_of(ts_tok), order)
    return _materialise(path, checks, rows.line, "line", strict, ts, ids, dlc, payload, labels)


def _has_flag(rows: _Rows, dlc: np.ndarray, ok: np.ndarray) -> bool:
    """Whether this survival-analysis file carries a flag column, from its first well-formed row."""
    candidates = np.flatnonzero(ok & ((rows.count == dlc + 3) | (rows.count == dlc + 4)))
    if candidates.size == 0:
        return False
    i = int(candidates[0])
    return bool(rows.count[i] == dlc[i] + 4)


def _read_hcrl_ch(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    return _read_hcrl_csv(path, raw, strict, order, flag="required")


def _read_hcrl_sa(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    return _read_hcrl_csv(path, raw, strict, order, flag="optional")


_TXT_KEYWORDS = ((0, "Timestamp:"), (2, "ID:"), (5, "DLC:"))  # token index, expected text
_TXT_SHAPE = "'Timestamp: <seconds> ID: <hex> <rtr> DLC: <0-8> <DLC hex bytes>'"


def _squeeze_blanks(data: bytes) -> bytes:
    """Collapse runs of spaces/tabs to one space and drop them at line ends.

    ``normal_run_data.txt`` aligns its columns with runs of spaces; once squeezed, a
    single space is a field separator and the shared tokeniser applies (regex kernels
    were 20x slower). Newlines are kept, so line numbers do not move.
    """
    buf = np.frombuffer(data, np.uint8)
    blank = (buf == 32) | (buf == 9)
    if not blank.any():
        return data
    edge = (buf == 10) | (buf == 13)
    before = np.concatenate(([True], blank[:-1] | edge[:-1]))  # preceded by blank / line start
    after = np.concatenate((edge[1:], [True]))  # followed by a line end / EOF
    drop = blank & (before | after)
    out = buf[~drop]
    out[out == 9] = 32
    return out.tobytes()


def _read_hcrl_ch_txt(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    """``normal_run_data.txt``: space-separated tokens ``Timestamp: ts ID: id rtr DLC: n b0 ..``."""
    data = _decompress(path, raw)
    rows = _tokenise(_squeeze_blanks(data), b" ", original=data)
    if len(rows) == 0:
        raise DataFormatError(f"{path}: empty file, no frames", path=path)
    n = len(rows)
    text_of = rows.text_of
    checks = _Checks(n)
    malformed = rows.count < 7
    for index, keyword in _TXT_KEYWORDS:
        malformed |= ~_bool_np(pc.equal(rows.column(index), keyword))
    checks.add(malformed, "line", _TXT_SHAPE, text_of)
    ts_tok, id_tok, dlc_tok = rows.column(1), rows.column(3), rows.column(6)
    ts, bad_ts = _timestamps(ts_tok)
    checks.add(bad_ts, "timestamp", "a finite number of seconds", _values_of(ts_tok))
    ids, bad_id = _ids(id_tok)
    checks.add(bad_id, "ID", f"1-8 hex digits, at most 0x{MAX_CAN_ID:X}", _values_of(id_tok))
    dlc_raw = _dict_lookup(dlc_tok, _decode_dlc)
    checks.add(dlc_raw < 0, "DLC", "an integer 0..8", _values_of(dlc_tok))
    dlc = np.where(dlc_raw < 0, 0, dlc_raw)
    data_of = lambda i: " ".join(text_of(i).split()[7:])  # noqa: E731 - the bytes part of the line
    checks.add(
        rows.count != dlc + 7,
        "data bytes",
        "DLC space-separated bytes",
        data_of,
        lambda i: f"DLC = {int(dlc[i])} space-separated bytes, got {int(rows.count[i]) - 7}",
    )
    payload, bad_payload = _decode_byte_columns(rows, dlc, 7)
    checks.add(bad_payload, "data bytes", "bytes of 1-2 hex digits each", data_of)
    _add_order_check(checks, ts, rows.line, _values_of(ts_tok), order)
    labels = np.zeros(n, np.uint8)
    return _materialise(path, checks, rows.line, "line", strict, ts, ids, dlc, payload, labels)


_READERS: dict[str, Callable[[Path, bytes, bool, _Order], _Frames]] = {
    "ctt": _read_ctt,
    "hcrl_ch": _read_hcrl_ch,
    "hcrl_ch_txt": _read_hcrl_ch_txt,
    "hcrl_sa": _read_hcrl_sa,
}
