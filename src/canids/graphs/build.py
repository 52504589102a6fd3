"""Vectorised graph building: one capture's frames -> windows -> node/edge tensors.

A window is ``window_size`` consecutive frames of ONE capture (windows never cross a file
boundary because timestamps restart per file). Node = distinct CAN ID in the window,
directed edge = transition between consecutive frames' IDs. Everything is computed with
whole-array numpy operations over all windows of a capture at once: a Python loop per
window would cap preprocessing at a few thousand windows per second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from canids.data.frames import Capture
from canids.data.suppress import Suppression, missed_frame_times, window_misses_a_frame
from canids.graphs.formulas import (  # noqa: F401  (the scaling constants stay readable here, as tests read them)
    _JITTER_CLIP,
    _LOG_IA_MAX,
    _LOG_IA_MIN,
    _MIN_IA_S,
    _NEUTRAL_LOG_IA,
    GRAPH_FRAME_COLUMNS,
    NODE_FRAME_COLUMNS,
    edge_features,
    gap_ms,
    graph_features,
    inter_arrival,
    late,
    micros,
    node_features,
    overdue,
    payload_change,
    payload_words,
    rate_violation,
    regular,
    timing_features,
)
from canids.graphs.vocab import Vocabulary

if TYPE_CHECKING:  # imported where a GraphSet is built: the streaming path (graphs.stream) runs without torch
    from canids.graphs.graphset import GraphSet


def build_graphs(captures: list[Capture], vocab: Vocabulary, window_size: int = 100, stride: int | None = None) -> GraphSet:
    """Build the windows of several captures into one ``GraphSet`` (capture order kept)."""
    from canids.graphs.graphset import GraphSet

    stride = stride or window_size
    if window_size < 2 or stride < 1:
        raise ValueError(f"window_size must be >= 2 and stride >= 1, got {window_size}/{stride}")
    parts = [_build_capture(cap, vocab, window_size, stride, k) for k, cap in enumerate(captures)]
    attack_types = sorted({cap.attack_type for cap in captures} | {"normal"})
    type_index = {name: i for i, name in enumerate(attack_types)}
    for part, cap in zip(parts, captures):
        part["attack_type"] = np.full(len(part["y"]), type_index[cap.attack_type], np.int64)
        part["attack_type"][part["y"] == 0] = type_index["normal"]
    return GraphSet.concatenate_parts(
        parts,
        capture_names=[f"{cap.split}/{cap.name}" if cap.split else cap.name for cap in captures],
        attack_types=attack_types,
        window_size=window_size,
    )


def frame_features(cap: Capture, vocab: Vocabulary, t0: float | None = None) -> dict[str, np.ndarray]:
    """Per-frame quantities computed once per capture, before windowing.

    Every quantity compares a frame with the previous frame of the SAME ID in the same
    capture, never with a table learnt on the training vehicle: a vehicle the model never
    saw has other IDs, periods and constant bytes, and features relative to the training
    vehicle's vocabulary made every one of its windows look like an attack (the failure on
    the unknown-vehicle splits that published methods share). What transfers is how CAN
    traffic behaves on any vehicle: periodic IDs repeat every 10 ms - 1 s with ~2 %
    jitter, change one or two bytes per frame (counters, checksums), and never reappear
    within a millisecond; injected frames break exactly these regularities.

    Causal: a frame only looks back, so the same features can be computed on a live bus
    (``graphs.stream`` does, passing the capture's first timestamp as ``t0``, the warm-up
    clock, when ``cap`` holds only the recent frames).
    """
    n = len(cap)
    can_id = cap.can_id.astype(np.int64)
    ts = cap.timestamp
    order = stable_order(can_id)
    id_sorted = can_id[order]
    has_prev_sorted = np.r_[False, id_sorted[1:] == id_sorted[:-1]]
    has_prev2_sorted = has_prev_sorted & np.r_[False, has_prev_sorted[:-1]]
    ia_sorted = inter_arrival(np.r_[0.0, np.diff(ts[order])])
    prev_ia_sorted = np.r_[_MIN_IA_S, ia_sorted[:-1]]
    payload_sorted = payload_words(cap.payload)[order]
    dlc_sorted = cap.dlc[order]
    diff_words = np.zeros(n, np.uint64)
    diff_words[1:] = payload_sorted[1:] ^ payload_sorted[:-1]
    dlc_changed = np.r_[False, dlc_sorted[1:] != dlc_sorted[:-1]]
    t_rel_sorted = ts[order] - (t0 if t0 is not None else ts[0] if n else 0.0)
    log_ia_sorted, jitter_sorted, fast_sorted, new_sorted = timing_features(ia_sorted, prev_ia_sorted, has_prev_sorted, has_prev2_sorted, t_rel_sorted)
    changed_sorted, byte_change_sorted = payload_change(diff_words, dlc_changed, dlc_sorted, has_prev_sorted)
    # Each frame's place in its ID's history: how many frames, regular transitions and
    # microseconds of regular transitions came before it (exact integer counts).
    group_start = np.maximum.accumulate(np.where(has_prev_sorted, 0, np.arange(n)))
    n_before = np.arange(n) - group_start
    regular_sorted = regular(jitter_sorted, has_prev2_sorted)
    ia_us_sorted = micros(ia_sorted)
    regular_us_sorted = np.where(regular_sorted, ia_us_sorted, 0)
    regular_before, regular_us_before = (_before_in_group(values, group_start) for values in (regular_sorted.astype(np.int64), regular_us_sorted))
    rate_sorted = rate_violation(ia_us_sorted, n_before, regular_before, regular_us_before)

    def unsort(values: np.ndarray, dtype=np.float32) -> np.ndarray:
        out = np.empty(n, dtype)
        out[order] = values
        return out

    return {
        "can_id": can_id,
        "vocab": unsort(_per_id(vocab.index, id_sorted, has_prev_sorted), np.int64),
        "log_ia": unsort(log_ia_sorted),
        "jitter": unsort(jitter_sorted),
        "fast": unsort(fast_sorted),
        "new_id": unsort(new_sorted),
        "changed": unsort(changed_sorted),
        "byte_change": unsort(byte_change_sorted),
        "entropy": payload_entropy(cap.payload, cap.dlc),
        "dt_next_ms": gap_ms(np.r_[np.diff(ts), 0.0]),
        "rate_violation": unsort(rate_sorted),
        # What overdue_ids reads: the frames in ID order, and each ID's regular transitions
        # and their microseconds up to and including each frame (sorted once, summed once).
        "id_order": order,
        "regular_upto": unsort(regular_before + regular_sorted, np.int64),
        "regular_us_upto": unsort(regular_us_before + regular_us_sorted, np.int64),
    }


def _before_in_group(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Per element, the sum of the integer ``values`` before it in its group (groups are runs
    starting at ``group_start``): one cumulative sum, exact, as integers are."""
    before = np.cumsum(values)
    before -= values
    before -= before[group_start]
    return before


def _per_id(function, id_sorted: np.ndarray, repeat_sorted: np.ndarray) -> np.ndarray:
    """``function(id_sorted)`` evaluated once per distinct ID (a capture has dozens, not millions)."""
    first = np.flatnonzero(~repeat_sorted)
    return np.repeat(function(id_sorted[first]), np.diff(np.r_[first, len(id_sorted)]))


def payload_entropy(payload: np.ndarray, dlc: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each frame's byte values over its DLC bytes.

    Random fuzzing payloads approach 3 bits; real signals with constant bytes stay low.
    Real traffic repeats payloads a lot, so the entropy is computed once per distinct
    (payload, DLC) and gathered back.
    """
    if len(payload) == 0:
        return np.zeros(0, np.float32)
    first, inverse = factorize(payload_words(payload))
    entropy = _entropy_rows(payload[first], dlc[first])[inverse]
    other_dlc = np.flatnonzero(dlc != dlc[first][inverse])  # same bytes, different DLC: rare
    if len(other_dlc):
        entropy[other_dlc] = _entropy_rows(payload[other_dlc], dlc[other_dlc])
    return entropy


def stable_order(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` for non-negative integers below 2**32, in linear time.

    NumPy's stable sort is a radix sort for 16-bit keys and a merge sort above; CAN IDs
    (11 or 29 bits) are sorted as one or two 16-bit digits, least significant first, which
    is 5-8x faster than a merge sort of int64 IDs on a capture of millions of frames.
    """
    values = np.asarray(values)
    if len(values) == 0 or values.min() < 0 or values.max() >= 1 << 32:
        return np.argsort(values, kind="stable")
    order = np.argsort((values & 0xFFFF).astype(np.uint16), kind="stable")
    if values.max() >= 1 << 16:
        order = order[np.argsort((values[order] >> 16).astype(np.uint16), kind="stable")]
    return order


#: Below this many keys NumPy's sort-based ``unique`` is quicker than building an Arrow array.
_HASH_FACTORIZE_MIN = 4096


def factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index of one occurrence of each distinct key, code of each key)`` for uint64 keys.

    Which occurrence represents a key is unspecified: callers only gather from it. A hash
    table (pyarrow's dictionary encoding; pyarrow already reads the captures) is ~5x faster
    than ``np.unique``'s stable argsort on the millions of payloads of a capture.
    """
    if len(keys) < _HASH_FACTORIZE_MIN:
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        return first, inverse
    import pyarrow as pa  # here, not at module level: the in-vehicle streaming path runs without it

    keys = np.ascontiguousarray(keys, np.uint64)
    encoded = pa.Array.from_buffers(pa.uint64(), len(keys), [None, pa.py_buffer(keys)]).dictionary_encode()
    inverse = np.frombuffer(encoded.indices.buffers()[1], np.int32, count=len(keys)).astype(np.int64)
    first = np.empty(len(encoded.dictionary), np.int64)
    first[inverse] = np.arange(len(keys))
    return first, inverse


def _entropy_rows(payload: np.ndarray, dlc: np.ndarray) -> np.ndarray:
    n = len(payload)
    if n == 0:
        return np.zeros(0, np.float32)
    vals = payload.astype(np.int16)
    vals = np.where(np.arange(8)[None, :] < dlc[:, None], vals, 256)  # sentinel for absent bytes
    vals.sort(axis=1)
    new_run = np.ones((n, 8), bool)
    new_run[:, 1:] = vals[:, 1:] != vals[:, :-1]
    starts = np.flatnonzero(new_run.ravel())
    lengths = np.diff(np.r_[starts, n * 8])
    row = starts // 8
    present = vals.ravel()[starts] != 256
    p = lengths / np.maximum(dlc.astype(np.float64), 1.0)[row]
    ent = np.bincount(row, weights=np.where(present, -p * np.log2(p), 0.0), minlength=n)
    return ent.astype(np.float32)


def overdue_ids(ff: dict[str, np.ndarray], ts: np.ndarray, end: np.ndarray) -> np.ndarray:
    """How many IDs are ``formulas.overdue`` at each window's last frame (positions ``end``,
    ascending), from every frame of the capture up to and including it (``frame_features``'s
    ``id_order``, ``regular_upto`` and ``regular_us_upto``): the state a live builder holds
    after that window.

    An ID can only be overdue in a gap after one of its frames that is itself overdue
    before the next frame comes (timestamps never decrease within a capture, so no window
    end inside a shorter gap is later). Such gaps are rare on a healthy bus, so only the
    (gap, window end) pairs inside them are checked, with the same ``overdue`` a live
    builder calls: linear in the frames, not in frames x IDs.
    """
    order = ff["id_order"]
    n = len(order)
    count = np.zeros(len(end), np.int64)
    if n == 0 or len(end) == 0:
        return count
    id_sorted = ff["can_id"][order]
    same_as_next = np.r_[id_sorted[1:] == id_sorted[:-1], False]
    group_start = np.maximum.accumulate(np.where(np.r_[False, same_as_next[:-1]], 0, np.arange(n)))
    frames = np.arange(1, n + 1) - group_start  # the ID's frames up to and including this one
    regular_count, regular_total_us = ff["regular_upto"][order], ff["regular_us_upto"][order]
    ts_sorted = ts[order]
    next_ts = np.where(same_as_next, np.r_[ts_sorted[1:], np.inf], np.inf)
    # A gap with a window end where the ID is overdue is late by its next frame (or, after
    # the ID's last frame, ever: next_ts is infinite there).
    gap = np.flatnonzero(late(frames, regular_count, regular_total_us, ts_sorted, next_ts))
    if len(gap) == 0:
        return count
    next_position = np.where(same_as_next[gap], order[np.minimum(gap + 1, n - 1)], n)
    lo = np.searchsorted(end, order[gap], side="left")
    hi = np.searchsorted(end, next_position, side="left")
    pairs = hi - lo
    which_gap = np.repeat(np.arange(len(gap)), pairs)
    window = np.arange(pairs.sum()) - np.repeat(np.cumsum(pairs) - pairs, pairs) + lo[which_gap]
    g = gap[which_gap]
    hit = overdue(frames[g], regular_count[g], regular_total_us[g], ts_sorted[g], ts[end[window]])
    return np.bincount(window[hit], minlength=len(end))


def window_labels(cap: Capture, frame_labels: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """A window is an attack window when it holds an attack frame, or, for a capture with
    recorded suppression episodes, when the silenced ID misses an expected frame inside it
    (``canids.data.suppress``: a suppression attack removes frames and labels none)."""
    y = frame_labels.any(axis=1)
    if "suppressed" in cap.meta:
        missed = missed_frame_times(cap.timestamp, cap.can_id, Suppression.from_meta(cap.meta["suppressed"]))
        y |= window_misses_a_frame(ts[:, 0], ts[:, -1], missed)
    return y


def _build_capture(cap: Capture, vocab: Vocabulary, size: int, stride: int, capture_index: int) -> dict[str, np.ndarray]:
    return window_graphs(cap, frame_features(cap, vocab), size, stride, capture_index)


def window_graphs(cap: Capture, ff: dict[str, np.ndarray], size: int, stride: int, capture_index: int) -> dict[str, np.ndarray]:
    """The window graphs of ``cap`` (a ``GraphSet`` part) from its per-frame features ``ff``."""
    n = len(cap)
    n_win = (n - size) // stride + 1 if n >= size else 0
    if n_win <= 0:
        from canids.graphs.graphset import GraphSet

        return GraphSet.empty_part()
    if stride == size:
        idx = np.arange(n_win * size)
    else:
        idx = (np.arange(n_win)[:, None] * stride + np.arange(size)[None, :]).ravel()
    win = np.repeat(np.arange(n_win, dtype=np.int64), size)
    key = (win << 32) | ff["can_id"][idx]
    # One stable sort groups each window's frames by ID: group starts give the nodes, and the
    # first frame of a group is the ID's first appearance in the window.
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    new_node = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    starts = np.flatnonzero(new_node)
    node_key = sorted_key[starts]
    n_nodes = len(node_key)
    node_of = np.cumsum(new_node) - 1  # node of each frame, in sorted order
    inv = np.empty(len(key), np.int64)
    inv[order] = node_of
    count = np.diff(np.r_[starts, len(key)])
    node_win = node_key >> 32
    node_ptr = np.searchsorted(node_win, np.arange(n_win + 1))
    cnt = count.astype(np.float32)

    frame_idx = idx[order]
    frame_columns = np.empty((len(NODE_FRAME_COLUMNS), len(frame_idx)), np.float32)
    for row, name in zip(frame_columns, NODE_FRAME_COLUMNS):
        np.take(ff[name], frame_idx, out=row)
    x = node_features(frame_columns, cap.payload[frame_idx], node_of, starts, count)
    node_vocab = ff["vocab"][frame_idx[starts]]

    inv_mat = inv.reshape(n_win, size)
    src, dst = inv_mat[:, :-1].ravel(), inv_mat[:, 1:].ravel()
    dt = ff["dt_next_ms"][idx].reshape(n_win, size)[:, :-1].ravel().astype(np.float64)
    edge_key = src.astype(np.int64) * n_nodes + dst
    e_key, e_inv, e_count = np.unique(edge_key, return_inverse=True, return_counts=True)
    e_src, e_dst = e_key // n_nodes, e_key % n_nodes
    dt_sum, dt_sq_sum = (np.bincount(e_inv, weights=w, minlength=len(e_key)) for w in (dt, dt**2))
    edge_attr = edge_features(e_src, e_dst, e_count, dt_sum, dt_sq_sum)
    edge_ptr = np.searchsorted(node_win[e_src], np.arange(n_win + 1))

    ts = cap.timestamp[idx].reshape(n_win, size)
    labels = cap.label[idx].reshape(n_win, size)
    max_share = np.maximum.reduceat(cnt, node_ptr[:-1]) / size if n_nodes else np.zeros(n_win, np.float32)
    n_overdue = overdue_ids(ff, cap.timestamp, idx.reshape(n_win, size)[:, -1])
    u = graph_features(max_share, np.stack([ff[name][idx].reshape(n_win, size) for name in GRAPH_FRAME_COLUMNS], axis=1), n_overdue)
    return {
        "x": x,
        "node_vocab": node_vocab,
        "node_can_id": (node_key & 0xFFFFFFFF).astype(np.int64),
        "edge_index": np.stack([e_src, e_dst]).astype(np.int64),
        "edge_attr": edge_attr,
        "node_ptr": node_ptr.astype(np.int64),
        "edge_ptr": edge_ptr.astype(np.int64),
        "u": u,
        "y": window_labels(cap, labels, ts).astype(np.int64),
        "attack_frames": labels.sum(axis=1).astype(np.int64),
        "capture": np.full(n_win, capture_index, np.int64),
        "t_start": ts[:, 0].astype(np.float64),
    }
