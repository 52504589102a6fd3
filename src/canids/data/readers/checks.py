"""Row checks: first failure per row, strict vs lenient, and the decoded frames they guard.

Readers validate whole columns at once and register each result here in priority order;
``_Checks`` remembers, per row, the first check that failed, so strict mode can name the
most basic problem on the first bad line and lenient mode can count skipped rows by
reason. ``_materialise`` is the single place where that choice is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from canids.data.readers.errors import DataFormatError, _row_error


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
