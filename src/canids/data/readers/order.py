"""Timestamp order: the ``strict`` / ``sort`` policy, its row check, and the stable sort.

Every format applies the same policy (see the package docstring), so it is defined once:
``_order_policy`` validates the arguments, ``_add_order_check`` flags rows that go back in
time (or back too far, with ``sort``), and ``_sort_by_time`` repairs small jitter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from canids.data.readers.checks import _Checks, _Frames

#: ``timestamp_order`` values accepted by ``read_capture`` (and the catalog).
TIMESTAMP_ORDERS: tuple[str, ...] = ("strict", "sort")

#: Largest backward timestamp jump, in seconds, that ``timestamp_order="sort"`` repairs.
DEFAULT_MAX_BACKWARDS_S = 0.01


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
