"""One live window's graph from its frames and the per-ID history: ``build.window_graphs``
for a single window, with ``build.frame_features``'s per-frame inputs read from the history.

A window is ~100 frames, so a NumPy call costs its overhead, not its arithmetic, and the
cost of a window is the number and the kind of its calls (~200 ufunc calls, ~300 array
objects). Measured on 100 elements: a 1-D gather or scatter with an intp index ~0.1 us (an
int32 or uint8 index, or a 2-D row gather, ~0.6-1 us); a ufunc on 1-D arrays ~0.2 us, more
with a Python scalar or a cast; a ufunc reduction, reduceat or cumulative sum ~0.6-1 us
(``argmax`` finds one extreme in 0.1 us); every array, views included, costs its creation.
Rebuilding a small capture per window and rerunning the batch code took 4x more; this
module computes the same numbers directly, with the formulas ``build.py`` uses
(``graphs.formulas``: ``timing_features``, ``payload_change``, ``node_features``,
``edge_features``, ``graph_features``): one definition of each feature.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from canids.graphs.formulas import (
    _I_ONE,
    _I_ZERO,
    _PERIOD_WARMUP,
    _ROLLING_WARMUP,
    GRAPH_FRAME_COLUMNS,
    NODE_FRAME_COLUMNS,
    edge_features,
    gap_ms,
    graph_features,
    inter_arrival,
    micros,
    node_features,
    payload_change,
    payload_words,
    rate_violation,
    regular,
    stalled,
    timing_features,
    warmup_parts,
)
from canids.graphs.stream_state import IdHistory, entropy_index, entropy_table_float32


# The rows _frame_features writes, by position.
assert NODE_FRAME_COLUMNS == ("log_ia", "jitter", "changed", "byte_change", "entropy", "new_id", "stalled"), NODE_FRAME_COLUMNS
assert GRAPH_FRAME_COLUMNS == ("fast", "jitter", "new_id", "rate_violation", "stalled"), GRAPH_FRAME_COLUMNS
#: Past this many frames, every ID of a window is past its warm-up (``formulas.warmup_parts``).
_WARMUP_FRAMES = max(_PERIOD_WARMUP, _ROLLING_WARMUP)


def window_graph(history: IdHistory, t0: float, timestamp: np.ndarray, can_id: np.ndarray, dlc: np.ndarray, payload: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(x, edge_index, edge_attr, u, node_vocab)`` of one window, advancing ``history`` past it."""
    n = len(timestamp)
    # One stable sort groups the frames by ID, in time order within an ID: exactly the
    # order frame_features and window_graphs sort into, so every reduction adds alike.
    order = can_id.argsort(kind="stable")
    ids = can_id[order]
    first = np.empty(n, bool)
    first[0] = True
    np.not_equal(ids[1:], ids[:-1], first[1:])
    starts = first.nonzero()[0]
    rows = history.rows(ids[starts])
    node = np.add.accumulate(first, dtype=np.intp)  # (first.cumsum() casts bools slower)
    node -= 1
    count = np.bincount(node)
    last = starts + count
    last -= 1
    # Grouped payloads gathered as words (1-D: a tenth of a 2-D row gather), bytes as a view;
    # DLCs as intp, the index dtype the payload features' tables take fastest.
    ts, frame_dlc, words = timestamp[order], dlc[order].astype(np.intp), payload_words(payload)[order]
    frame_payload = words.view(np.uint8).reshape(n, 8)
    per_frame, graph_frame, ia, totals = _frame_features(history, rows, starts, node, order, ts, frame_dlc, words, t0)

    x = node_features(per_frame, frame_payload, node, starts, count)
    node_of_frame = np.empty(n, np.int64)
    node_of_frame[order] = node
    edge_index, edge_attr = _edges(node_of_frame, len(starts), timestamp)
    history.advance(rows, history.seen[rows] + count, *totals, ts[last], ia[last], frame_dlc[last], words[last])
    # The overdue count as float64: graph_features clips and scales it without casting (same values).
    n_overdue = np.array([float(history.n_overdue(float(timestamp[-1])))])
    u = graph_features(np.float32(count[count.argmax()]) / n, graph_frame, n_overdue)
    return x, edge_index, edge_attr, u[0], history.vocab_index[rows]


def _frame_features(history: IdHistory, rows: np.ndarray, starts: np.ndarray, node: np.ndarray, order: np.ndarray, ts: np.ndarray, dlc: np.ndarray, words: np.ndarray, t0: float) -> tuple[np.ndarray, ...]:
    """Per-frame features of the window's frames grouped by ID (group ``i`` starts at
    ``starts[i]``, ``node`` is each frame's group, ``rows`` its ID's history
    row, ``words`` are the payloads as ``payload_words``): ``NODE_FRAME_COLUMNS`` [7, n] in
    grouped order, ``GRAPH_FRAME_COLUMNS`` [1, 5, n] for ``graph_features``, the frames'
    inter-arrivals, and per group its ID's regular transitions and their microseconds and
    its warm-up (rolling bits, regular transitions, microseconds) after the window (None
    when every ID is past its warm-up: it stays as it was).

    A frame's predecessor of the same ID is the frame before it in its group, or for the
    group's first frame the ID's history row: the same predecessor ``frame_features`` finds
    in the whole capture, so the features are the same numbers.
    """
    n = len(ts)
    position, shift = _positions(n)
    # The frames of its ID before each frame (the history's, then the window's own): whether
    # it had one and two is has_prev and has_prev2.
    seen = history.seen[rows]
    n_before = (seen - starts)[node]
    n_before += position
    has_prev, has_prev2 = n_before > _I_ZERO, n_before > _I_ONE
    ia = inter_arrival(ts - _previous(ts, shift, starts, history.last_ts[rows]))
    log_ia, jitter, fast, new_id = timing_features(ia, _previous(ia, shift, starts, history.last_ia[rows]), has_prev, has_prev2, ts - t0)
    diff_words = words ^ _previous(words, shift, starts, history.last_word[rows])
    dlc_changed = dlc != _previous(dlc, shift, starts, history.last_dlc[rows])
    changed, byte_change = payload_change(diff_words, dlc_changed, dlc, has_prev)
    # Whether its transition is regular, and its microseconds where it is: one [2, n] int64
    # array, so that one reduceat sums both per ID (exact integers, in any order).
    ia_us = micros(ia)
    transitions = np.empty((2, n), np.int64)
    is_regular, regular_us = transitions[0], transitions[1]
    is_regular[:] = regular(jitter, has_prev2)
    np.multiply(ia_us, is_regular, out=regular_us)
    if seen[seen.argmin()] <= _WARMUP_FRAMES:  # an ID still warming up (past the first seconds: none)
        warmup = history.warmup_after(rows, starts, warmup_parts(n_before, diff_words, is_regular, regular_us))
        rolling_bits, warm_regular, warm_regular_us = (part[node] for part in warmup)
    else:  # read per frame from the history (3 gathers, where per ID and then per frame took 6)
        warmup, frame_rows = None, rows[node]
        rolling_bits, warm_regular, warm_regular_us = history.rolling_bits[frame_rows], history.warm_regular[frame_rows], history.warm_regular_us[frame_rows]
    violation = rate_violation(ia_us, n_before, warm_regular, warm_regular_us)
    regular_after = np.add.reduceat(transitions, starts, axis=1)
    regular_after[0] += history.regular[rows]
    regular_after[1] += history.regular_us[rows]
    totals = (regular_after[0], regular_after[1], warmup)
    per_frame = np.empty((len(NODE_FRAME_COLUMNS), n), np.float32)  # rows in NODE_FRAME_COLUMNS order
    per_frame[0] = log_ia
    per_frame[1] = jitter
    per_frame[2] = changed
    per_frame[3] = byte_change
    per_frame[4] = entropy_table_float32()[entropy_index(words, dlc)]
    per_frame[5] = new_id
    per_frame[6] = stalled(diff_words, dlc_changed, n_before, rolling_bits)
    # graph_features takes these in frame order, for its means to add alike. fast, new_id,
    # violation and stalled are 0 or 1, so any order adds them exactly: only jitter needs
    # putting back.
    graph_frame = np.empty((1, len(GRAPH_FRAME_COLUMNS), n), np.float32)  # GRAPH_FRAME_COLUMNS order
    graph_frame[0, 0] = fast
    graph_frame[0, 1, order] = jitter
    graph_frame[0, 2] = new_id
    graph_frame[0, 3] = violation
    graph_frame[0, 4] = per_frame[6]
    return per_frame, graph_frame, ia, totals


@cache
def _positions(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(arange(n), arange(-1, n - 1))``, read-only: each frame's position in the window, and
    its predecessor's (for ``_previous``). The same every window."""
    position, shift = np.arange(n), np.arange(-1, n - 1)
    position.flags.writeable = shift.flags.writeable = False
    return position, shift


def _previous(values: np.ndarray, shift: np.ndarray, starts: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Each grouped frame's predecessor value: the previous frame's (``shift`` is
    ``arange(-1, n - 1)``: one gather, a third of a slice copy into a new array), or
    ``before`` (the ID's history) at group starts (the first frame's among them)."""
    out = values[shift]
    out[starts] = before
    return out


def _edges(node_of_frame: np.ndarray, n_nodes: int, timestamp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(edge_index, edge_attr)``: one edge per distinct transition between consecutive
    frames' nodes, ordered by (source, target) as ``window_graphs``'s ``np.unique`` orders them.

    Every possible (source, target) key is a bincount bin (nodes^2 of them: ~600 on a live
    window, cheaper to zero than sorting the keys is): its count, and its gaps' sums added in
    frame order as ``window_graphs``'s bincount per edge adds them. The non-empty bins, in
    ascending order, are the edges; 9 NumPy calls fewer than sorting the keys.
    """
    key = node_of_frame[:-1] * n_nodes
    key += node_of_frame[1:]
    dt = gap_ms(timestamp[1:] - timestamp[:-1]).astype(np.float64)
    n_keys = n_nodes * n_nodes
    count = np.bincount(key, None, n_keys)
    edge_key = count.astype(bool).nonzero()[0]
    edge_index = np.empty((2, len(edge_key)), np.int64)
    e_source, e_target = edge_index[0], edge_index[1]
    np.divmod(edge_key, n_nodes, out=(e_source, e_target))
    dt_sum, dt_sq_sum = np.bincount(key, dt, n_keys), np.bincount(key, dt * dt, n_keys)
    attr = edge_features(e_source, e_target, count[edge_key], dt_sum[edge_key], dt_sq_sum[edge_key])
    return edge_index, attr
