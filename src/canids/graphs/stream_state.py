"""What the live graph builder remembers between windows, and its payload-entropy lookup.

Every per-frame feature compares a frame with the previous one or two frames of the same
CAN ID, or with that ID's history in the capture, so one row per ID holding its last
timestamp and inter-arrival, how many frames (and regular transitions, and their total
duration) it has had, last DLC and last payload (as one uint64 word), and what its warm-up
showed (``formulas._PERIOD_WARMUP``: its rolling bits and period) is the whole past the
features need (and, at a window's end, which IDs are overdue). Rows live in dense arrays: a
window reads and writes the rows of its IDs with one gather / scatter per column, where a
dict of per-frame tuples cost a Python loop over every frame.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from canids.graphs.build import _entropy_rows
from canids.graphs.formulas import _ALL_BITS, _OVERDUE_PERIODS, _operand, can_be_late, inter_arrival, overdue, payload_words, recent
from canids.graphs.vocab import Vocabulary

#: IDs below this find their row in a direct table (11-bit standard IDs, and extended IDs up
#: to 2^20); larger ones through a dict, slower but unbounded.
_TABLE_LIMIT = 1 << 20
#: ``formulas.late`` asks ``silent * 1e6 * regular > _OVERDUE_PERIODS * regular_us``; with
#: ``pace = regular / (regular_us - 0.5)`` (a hair above regular transitions per us) that
#: needs ``silent * pace`` above this (the margin covers every rounding; see ``n_overdue``).
_PACE_LIMIT = _OVERDUE_PERIODS * 1e-6 * (1 - 1e-9)
_HALF_US = _operand(0.5)


class IdHistory:
    """Per CAN ID, one row (in order of first sighting) of the state the features read."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.n_rows = 0
        self._row_of_id = np.full(1 << 11, -1, np.int64)  # CAN ID -> row, -1: never seen
        self._row_of_big_id: dict[int, int] = {}
        self._latest_end = -np.inf  # the latest t_end n_overdue was asked about
        self._allocate(64)

    def _allocate(self, capacity: int) -> None:
        """(Re)size the row arrays; rows past ``n_rows`` are unused."""
        old = {name: getattr(self, name) for name in ("last_ts", "last_ia", "seen", "regular", "regular_us", "pace", "last_dlc", "last_word", "vocab_index", "rolling_bits", "warm_regular", "warm_regular_us")} if self.n_rows else {}
        # One 1-D array per column: a window gathers and scatters each with NumPy's fast
        # 1-D indexing (~0.1 us), where a 2-D row gather or scatter costs ten times that.
        self.last_ts = np.zeros(capacity, np.float64)
        #: Inter-arrival of the ID's last frame (floored as the features use it).
        self.last_ia = np.zeros(capacity, np.float64)
        #: Frames of the ID so far (the features ask whether it had one, and two).
        self.seen = np.zeros(capacity, np.int64)
        #: Of those, frames whose transition was regular (``formulas.regular``), and the
        #: microseconds those transitions lasted (``formulas.micros``): the ID's period.
        self.regular = np.zeros(capacity, np.int64)
        self.regular_us = np.zeros(capacity, np.int64)
        #: regular / (regular_us - 0.5), or 0 where ``n_overdue`` found the ID cannot be
        #: overdue before its next frame: how ``n_overdue`` skips ``formulas.overdue``.
        self.pace = np.zeros(capacity, np.float64)
        self.last_dlc = np.zeros(capacity, np.intp)
        #: The ID's last payload, its 8 bytes as one word (``formulas.payload_words``).
        self.last_word = np.zeros(capacity, np.uint64)
        #: The ID's vocabulary index, looked up once per ID rather than once per frame.
        self.vocab_index = np.zeros(capacity, np.int64)
        #: Its warm-up so far (``formulas.warmup_parts``): the AND of its first transitions'
        #: payload changes (all bits before any), and its regular transitions among the
        #: first ones and their microseconds.
        self.rolling_bits = np.zeros(capacity, np.uint64)
        self.warm_regular = np.zeros(capacity, np.int64)
        self.warm_regular_us = np.zeros(capacity, np.int64)
        for name, values in old.items():
            getattr(self, name)[: self.n_rows] = values[: self.n_rows]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each of ``ids`` (ascending, distinct), adding rows for IDs never seen.

        (intp indexes 6x faster than CAN IDs' int32, and ``argmin`` finds the least of ~50
        numbers 6x faster than ``np.minimum.reduce``, whose reduction machinery dominates.)"""
        ids = ids.astype(np.intp)
        if ids[0] >= 0 and ids[-1] < len(self._row_of_id):
            rows = self._row_of_id[ids]
            if rows[rows.argmin()] < 0:  # new IDs (a fuzzer's: every few windows)
                new = (rows < 0).nonzero()[0]
                rows[new] = self._add(ids[new])
                self._row_of_id[ids[new]] = rows[new]
            return rows
        return self._rows_slow(ids)

    def _rows_slow(self, ids: np.ndarray) -> np.ndarray:
        """``rows`` for windows with IDs past the table: grow the table, add rows."""
        if len(self._row_of_id) <= ids[-1] < _TABLE_LIMIT:
            self._grow_table(int(ids[-1]))
        in_table = (ids >= 0) & (ids < len(self._row_of_id))
        rows = np.empty(len(ids), np.int64)
        rows[in_table] = self._row_of_id[ids[in_table]]
        rows[~in_table] = [self._row_of_big_id.get(i, -1) for i in ids[~in_table].tolist()]
        new = np.flatnonzero(rows < 0)
        if len(new):
            rows[new] = self._add(ids[new])
            self._row_of_id[ids[new][in_table[new]]] = rows[new][in_table[new]]
            self._row_of_big_id.update(zip(ids[new][~in_table[new]].tolist(), rows[new][~in_table[new]].tolist()))
        return rows

    def advance(self, rows: np.ndarray, seen: np.ndarray, regular: np.ndarray, regular_us: np.ndarray, warmup: tuple[np.ndarray, np.ndarray, np.ndarray] | None, last_ts: np.ndarray, last_ia: np.ndarray, last_dlc: np.ndarray, last_word: np.ndarray) -> None:
        """Record a window: per row, its totals after it (frames, regular transitions and
        their microseconds, its warm-up: rolling bits, regular transitions, their
        microseconds; None: as they were, every row past its warm-up) and its last frame's
        values."""
        if warmup is not None:
            self.rolling_bits[rows], self.warm_regular[rows], self.warm_regular_us[rows] = warmup
        self.seen[rows] = seen
        self.regular[rows] = regular
        self.regular_us[rows] = regular_us
        pace = regular_us - _HALF_US
        np.divide(regular, pace, out=pace)
        self.pace[rows] = pace
        self.last_ts[rows] = last_ts
        self.last_ia[rows] = last_ia
        self.last_dlc[rows] = last_dlc
        self.last_word[rows] = last_word

    def warmup_after(self, rows: np.ndarray, starts: np.ndarray, parts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row, its warm-up (rolling bits, regular transitions, their microseconds) after
        its frames' ``formulas.warmup_parts``, which are grouped by row, group ``i`` (row
        ``rows[i]``) from ``starts[i]``; nothing is recorded (``advance`` does)."""
        if not len(starts):
            return self.rolling_bits[rows], self.warm_regular[rows], self.warm_regular_us[rows]
        rolling, regular, regular_us = parts
        return (
            np.bitwise_and.reduceat(rolling, starts) & self.rolling_bits[rows],
            np.add.reduceat(regular, starts) + self.warm_regular[rows],
            np.add.reduceat(regular_us, starts) + self.warm_regular_us[rows],
        )

    def n_overdue(self, t_end: float) -> int:
        """How many IDs seen so far are ``formulas.overdue`` at ``t_end``.

        Evaluating ``overdue`` over every ID took ~20 NumPy calls a window, and on a healthy
        bus no ID is even close. An ID is ``late`` only if ``fl(fl(silent * 1e6) * regular)
        > 4 * regular_us`` (``silent = t_end - last_ts``, the same float), which implies
        ``silent * regular / regular_us > 4e-6 (1 - 2^-51)``, and then ``fl(silent * pace)``,
        with ``pace`` at least ``regular / regular_us`` by the 0.5 us it subtracts, exceeds
        ``_PACE_LIMIT``. So when no ID's ``silent * pace`` does, the count is 0 (3 calls);
        otherwise ``_count_overdue`` evaluates ``overdue`` itself. An ID with no regular
        transition has pace -0.0 or 0 and never counts.
        """
        rows = slice(0, self.n_rows)
        periods = t_end - self.last_ts[rows]
        periods *= self.pace[rows]
        if t_end >= self._latest_end and periods[periods.argmax()] <= _PACE_LIMIT:  # argmax: NaN first
            self._latest_end = t_end
            return 0
        return self._count_overdue(t_end)

    def _count_overdue(self, t_end: float) -> int:
        """``n_overdue`` by ``formulas.overdue`` over every ID. IDs it finds cannot be overdue
        again before their next frame (which sets their pace anew) get pace 0, so that the
        fast path holds again: those that ``can_be_late`` rules out, and, while ``t_end``
        never goes back, those no longer ``recent``."""
        rows = slice(0, self.n_rows)
        seen, regular, regular_us, last_ts = self.seen[rows], self.regular[rows], self.regular_us[rows], self.last_ts[rows]
        count = int(np.count_nonzero(overdue(seen, regular, regular_us, last_ts, t_end)))
        done = ~can_be_late(seen, regular, regular_us)
        if t_end >= self._latest_end:
            done |= ~recent(last_ts, t_end)
            self._latest_end = t_end
        self.pace[rows][done] = 0.0
        return count

    def _grow_table(self, can_id: int) -> None:
        """Widen the ID table to hold ``can_id``, moving in the IDs the dict held until now."""
        table = np.full(1 << can_id.bit_length(), -1, np.int64)
        table[: len(self._row_of_id)] = self._row_of_id
        for big in [i for i in self._row_of_big_id if 0 <= i < len(table)]:
            table[big] = self._row_of_big_id.pop(big)
        self._row_of_id = table

    def _add(self, ids: np.ndarray) -> np.ndarray:
        """Rows for IDs never seen: no frame yet, vocabulary index looked up."""
        rows = np.arange(self.n_rows, self.n_rows + len(ids))
        if rows[-1] >= len(self.last_ts):
            self._allocate(2 * (rows[-1] + 1))
        self.n_rows += len(ids)
        self.last_ia[rows] = inter_arrival(np.zeros(len(ids)))
        self.rolling_bits[rows] = _ALL_BITS
        self.vocab_index[rows] = self.vocab.index(ids.astype(np.int64))
        return rows


#: OR-ed onto a payload word by its DLC: bytes past the DLC become 255, so after sorting a
#: row its first DLC bytes are exactly its present bytes in ascending order.
_ABSENT_BYTES = np.where(np.arange(8)[None, :] < np.arange(256)[:, None], 0, 255).astype(np.uint8)
_ABSENT_WORDS = _ABSENT_BYTES.view("<u8").ravel()  # the same, one word per DLC
#: Bytes 0-6 of a word: the low 7 bits of each, and the top bit of each.
_LOW_7_BITS = np.array(0x007F7F7F7F7F7F7F, "<u8")
_TOP_BITS = np.array(0x0080808080808080, "<u8")
#: Multiplying a word whose only bits are byte j's top bits (8j + 7, j < 7) by this moves
#: bit 8j + 7 to 56 + j (a 2^(49 - 7j) term; the other terms land on distinct bits below 56
#: or past 63, so nothing carries): the top byte is then the 7 flags, bit j for byte j.
_GATHER_TOP_BITS = np.array(sum(1 << (49 - 7 * j) for j in range(7)), "<u8")
_SHIFT_BYTE, _SHIFT_FLAGS = np.array(8, "<u8"), np.array(56, "<u8")
#: The DLC's row of the entropy table, flattened (DLC * 128), OR-ed onto the 7 flags.
_DLC_ROW = (np.arange(256) << 7).astype("<u8")


def payload_entropy_lookup(payload: np.ndarray, dlc: np.ndarray) -> np.ndarray:
    """``build.payload_entropy`` of each row, bit for bit, at a sixth of its cost on a window.

    A row's entropy depends only on its DLC and the run lengths of its sorted present bytes,
    in ascending byte order (that is the order ``_entropy_rows`` sums the terms in). Those
    run lengths are given by which of the 7 neighbour pairs of the sorted row differ, so
    the entropy is one entry of a [256 DLC, 128 pattern] table that ``_entropy_table``
    fills by running ``_entropy_rows`` itself on one row per entry: the definition stays
    in ``build.py``; only its evaluation is cached. The pattern is computed on the sorted
    row as one word (``x = w ^ (w >> 8)``: byte j is zero where bytes j and j + 1 agree):
    eleven whole-array operations on n words, where comparing [n, 7] byte pairs and a matrix
    product cost twice as much. ``dlc`` indexes tables: intp is its fast dtype.
    """
    return _entropy_table().ravel()[entropy_index(payload_words(payload), dlc)]


def entropy_index(words: np.ndarray, dlc: np.ndarray) -> np.ndarray:
    """Each payload's entry in the flattened ``_entropy_table`` (``payload_entropy_lookup``),
    from its ``payload_words`` (left as they are) and DLC."""
    words = words | _ABSENT_WORDS[dlc]
    words.view(np.uint8).reshape(len(words), 8).sort(1)
    pairs = words >> _SHIFT_BYTE
    pairs ^= words
    # A byte's top bit is set exactly when the byte is non-zero (formulas._used_nonzero_bytes).
    flags = pairs & _LOW_7_BITS
    flags += _LOW_7_BITS
    flags |= pairs
    flags &= _TOP_BITS
    flags *= _GATHER_TOP_BITS
    flags >>= _SHIFT_FLAGS
    flags |= _DLC_ROW[dlc]
    return flags.view(np.int64)


@cache
def _entropy_table() -> np.ndarray:
    """Entropy per (DLC, pattern of differing sorted neighbours), from one row per entry."""
    dlc, pattern = np.meshgrid(np.arange(256), np.arange(128), indexing="ij")
    bits = (pattern.reshape(-1, 1) >> np.arange(7)) & 1
    # Byte j of the representative row = boundaries up to j: runs exactly where bits say.
    values = np.zeros((bits.shape[0], 8), np.uint8)
    values[:, 1:] = np.cumsum(bits, axis=1)
    return _entropy_rows(values, dlc.reshape(-1).astype(np.uint8)).reshape(256, 128)


@cache
def entropy_table_float32() -> np.ndarray:
    """``_entropy_table`` flattened and rounded to float32, as a window's per-frame columns
    hold it (a gather and a copy into their float32 row, no cast; ``np.take(..., out=)``
    costs three times as much)."""
    return _entropy_table().ravel().astype(np.float32)
