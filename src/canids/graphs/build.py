"""Vectorised graph building: one capture's frames -> windows -> node/edge tensors.

A window is ``window_size`` consecutive frames of ONE capture (windows never cross a file
boundary because timestamps restart per file). Node = distinct CAN ID in the window,
directed edge = transition between consecutive frames' IDs. Everything is computed with
whole-array numpy operations over all windows of a capture at once: a Python loop per
window would cap preprocessing at a few thousand windows per second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np

from canids.data.frames import Capture
from canids.data.suppress import Suppression, missed_frame_times, window_misses_a_frame
from canids.graphs.formulas import (  # noqa: F401  (the scaling constants stay readable here, as tests read them)
    _ALL_BITS,
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
    stalled,
    timing_features,
    warmup_parts,
)
from canids.graphs.vocab import Vocabulary

if TYPE_CHECKING:  # imported where a GraphSet is built: the streaming path (graphs.stream) runs without torch
    from canids.graphs.graphset import GraphSet
    from canids.graphs.stream_state import IdHistory


def build_graphs(captures: list[Capture], vocab: Vocabulary, window_size: int = 100, stride: int | None = None, chunk_frames: int | None = None) -> GraphSet:
    """Build the windows of several captures into one ``GraphSet`` (capture order kept).

    ``chunk_frames`` bounds the frames built at once (``capture_chunks``); the graphs are the
    same whatever it is."""
    from canids.graphs.graphset import GraphSet

    stride = _check_window(window_size, stride)
    attack_types = sorted({cap.attack_type for cap in captures} | {"normal"})
    parts = [_with_attack_type(part, cap, attack_types) for k, cap in enumerate(captures) for part in capture_chunks(cap, vocab, window_size, stride, k, chunk_frames)]
    return GraphSet.concatenate_parts(
        parts,
        capture_names=[capture_name(cap) for cap in captures],
        attack_types=attack_types,
        window_size=window_size,
    )


def capture_graph_chunks(cap: Capture, vocab: Vocabulary, window_size: int = 100, stride: int | None = None, chunk_frames: int | None = None) -> Iterator[GraphSet]:
    """The windows of ONE capture as consecutive ``GraphSet`` pieces of at most ``chunk_frames``
    frames' windows each, for a writer that appends them to the same capture
    (``ShardWriter.add(..., same_capture=True)``): memory bounded by ``chunk_frames``, not by
    the capture's length."""
    from canids.graphs.graphset import GraphSet

    stride = _check_window(window_size, stride)
    attack_types = sorted({cap.attack_type, "normal"})
    for part in capture_chunks(cap, vocab, window_size, stride, 0, chunk_frames):
        yield GraphSet.concatenate_parts([_with_attack_type(part, cap, attack_types)], capture_names=[capture_name(cap)], attack_types=attack_types, window_size=window_size)


def capture_name(cap: Capture) -> str:
    """How a capture is named in a graph set: ``split/name``."""
    return f"{cap.split}/{cap.name}" if cap.split else cap.name


def _check_window(window_size: int, stride: int | None) -> int:
    stride = stride or window_size
    if window_size < 2 or stride < 1:
        raise ValueError(f"window_size must be >= 2 and stride >= 1, got {window_size}/{stride}")
    return stride


def _with_attack_type(part: dict[str, np.ndarray], cap: Capture, attack_types: list[str]) -> dict[str, np.ndarray]:
    """A window is of its capture's attack type when it is an attack window, else ``normal``."""
    part["attack_type"] = np.where(part["y"] == 1, attack_types.index(cap.attack_type), attack_types.index("normal")).astype(np.int64)
    return part


def capture_chunks(cap: Capture, vocab: Vocabulary, size: int, stride: int, capture_index: int, chunk_frames: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The windows of ``cap`` (``GraphSet`` parts), built ``chunk_frames`` frames at a time.

    Every feature looks back at the same ID's earlier frames only, and everything it needs
    of them is one row per ID (``stream_state.IdHistory``, the live builder's state). So a
    chunk is built from its frames and that history, which then advances to the next
    chunk's first frame: the windows are the same, bit for bit, as with the whole capture at
    once, and memory is bounded by the chunk, not by the capture (a capture of tens of
    millions of frames needed several GB at once). With overlapping windows (``stride <
    size``) a chunk's last frames are built again by the next one.
    """
    from canids.graphs.stream_state import IdHistory  # here: stream_state imports this module

    n = len(cap)
    n_win = (n - size) // stride + 1 if n >= size else 0
    if n_win <= 0:
        from canids.graphs.graphset import GraphSet

        yield GraphSet.empty_part()
        return
    per_chunk = n_win if chunk_frames is None else max(1, (max(int(chunk_frames), size) - size) // stride + 1)
    history = IdHistory(vocab)
    t0 = float(cap.timestamp[0])
    missed = _missed_frames(cap)
    for w0 in range(0, n_win, per_chunk):
        w1 = min(n_win, w0 + per_chunk)
        first, stop = w0 * stride, (w1 - 1) * stride + size
        if w1 < n_win:  # the history must reach the next chunk's first frame, and not pass it
            stop = max(stop, w1 * stride)  # (frames between windows, with stride > size, count)
        chunk = cap.slice(first, stop)
        ff = frame_features(chunk, vocab, t0, history, advance=None if w1 == n_win else w1 * stride - first)
        yield window_graphs(chunk, ff, size, stride, capture_index, missed)


def frame_features(cap: Capture, vocab: Vocabulary, t0: float | None = None, history: "IdHistory | None" = None, advance: int | None = None) -> dict[str, np.ndarray]:
    """Per-frame quantities computed once per capture (or chunk of one), before windowing.

    Every quantity compares a frame with the previous frame of the SAME ID in the same
    capture, never with a table learnt on the training vehicle: a vehicle the model never
    saw has other IDs, periods and constant bytes, and features relative to the training
    vehicle's vocabulary made every one of its windows look like an attack (the failure on
    the unknown-vehicle splits that published methods share). What transfers is how CAN
    traffic behaves on any vehicle: periodic IDs repeat every 10 ms - 1 s with ~2 %
    jitter, change one or two bytes per frame (counters, checksums), and never reappear
    within a millisecond; injected frames break exactly these regularities.

    Causal: a frame only looks back. ``history`` holds each ID's past before ``cap``'s first
    frame (fresh: none), and ``t0`` the capture's first timestamp (the warm-up clock;
    default ``cap``'s own). The history is advanced past ``cap``'s first ``advance`` frames
    (default: all of them).
    """
    from canids.graphs.stream_state import IdHistory  # here: stream_state imports this module

    history = history if history is not None else IdHistory(vocab)
    n = len(cap)
    can_id = cap.can_id.astype(np.int64)
    ts = cap.timestamp
    order = stable_order(can_id)
    id_sorted = can_id[order]
    repeat_sorted = np.r_[False, id_sorted[1:] == id_sorted[:-1]]  # the frame before it in the chunk is of its ID
    first = np.flatnonzero(~repeat_sorted)
    count = np.diff(np.r_[first, n])
    known = history.n_rows  # rows of IDs seen before this chunk
    rows = history.rows(id_sorted[first]) if n else np.zeros(0, np.int64)
    prior = _prior_gaps(history, known, rows, order[first], n)
    group_start = np.maximum.accumulate(np.where(repeat_sorted, 0, np.arange(n)))
    # Each frame's place in its ID's history: how many frames, regular transitions and
    # microseconds of regular transitions came before it (exact integer counts).
    n_before = np.arange(n) - group_start + np.repeat(history.seen[rows], count)
    has_prev_sorted, has_prev2_sorted = n_before >= 1, n_before >= 2
    ts_sorted = ts[order]
    ia_sorted = inter_arrival(ts_sorted - _previous(ts_sorted, first, history.last_ts[rows]))
    prev_ia_sorted = _previous(ia_sorted, first, history.last_ia[rows])
    words_sorted = payload_words(cap.payload)[order]
    dlc_sorted = cap.dlc[order]
    diff_words = words_sorted ^ _previous(words_sorted, first, history.last_word[rows])
    dlc_changed = dlc_sorted != _previous(dlc_sorted, first, history.last_dlc[rows])
    t_rel_sorted = ts_sorted - (t0 if t0 is not None else ts[0] if n else 0.0)
    log_ia_sorted, jitter_sorted, fast_sorted, new_sorted = timing_features(ia_sorted, prev_ia_sorted, has_prev_sorted, has_prev2_sorted, t_rel_sorted)
    changed_sorted, byte_change_sorted = payload_change(diff_words, dlc_changed, dlc_sorted, has_prev_sorted)
    regular_sorted = regular(jitter_sorted, has_prev2_sorted)
    ia_us_sorted = micros(ia_sorted)
    regular_us_sorted = np.where(regular_sorted, ia_us_sorted, 0)
    regular_int = regular_sorted.astype(np.int64)
    regular_before = _before_in_group(regular_int, group_start) + np.repeat(history.regular[rows], count)
    regular_us_before = _before_in_group(regular_us_sorted, group_start) + np.repeat(history.regular_us[rows], count)
    # Every frame that reads the warm-up comes after all of its ID's warm-up frames: the
    # ID's warm-up over the whole chunk is the one it reads.
    parts = warmup_parts(n_before, diff_words, regular_int, regular_us_sorted)
    warmup = history.warmup_after(rows, first, parts)
    rate_sorted = rate_violation(ia_us_sorted, n_before, np.repeat(warmup[1], count), np.repeat(warmup[2], count))
    stalled_sorted = stalled(diff_words, dlc_changed, n_before, np.repeat(warmup[0], count))
    regular_upto, regular_us_upto = regular_before + regular_sorted, regular_us_before + regular_us_sorted
    vocab_sorted = np.repeat(history.vocab_index[rows], count)
    if advance is not None and advance < n:  # the history takes the warm-up of the advanced frames only
        before_advance = order < advance
        warmup = history.warmup_after(rows, first, (np.where(before_advance, parts[0], _ALL_BITS), parts[1] * before_advance, parts[2] * before_advance))
    _advance(history, rows, first, order, n if advance is None else advance, ts_sorted, ia_sorted, dlc_sorted, words_sorted, regular_upto, regular_us_upto, warmup)

    def unsort(values: np.ndarray, dtype=np.float32) -> np.ndarray:
        out = np.empty(n, dtype)
        out[order] = values
        return out

    return {
        "can_id": can_id,
        "vocab": unsort(vocab_sorted, np.int64),
        "log_ia": unsort(log_ia_sorted),
        "jitter": unsort(jitter_sorted),
        "fast": unsort(fast_sorted),
        "new_id": unsort(new_sorted),
        "changed": unsort(changed_sorted),
        "byte_change": unsort(byte_change_sorted),
        "entropy": payload_entropy(cap.payload, cap.dlc),
        "dt_next_ms": gap_ms(np.r_[np.diff(ts), 0.0]),
        "rate_violation": unsort(rate_sorted),
        "stalled": unsort(stalled_sorted),
        # What overdue_ids reads, in ID order (``id_order``): each frame's frames, regular
        # transitions and their microseconds up to and including it, and the gaps that
        # began before the chunk (``_prior_gaps``).
        "id_order": order,
        "frames_upto_sorted": n_before + 1,
        "regular_upto_sorted": regular_upto,
        "regular_us_upto_sorted": regular_us_upto,
        **prior,
    }


def _previous(values_sorted: np.ndarray, first: np.ndarray, history_values: np.ndarray) -> np.ndarray:
    """Per frame (in ID order), the same ID's previous frame's value: the frame before it in
    the chunk, or, for an ID's first frame in the chunk, its history row's (an ID never seen
    has a row of zeros; the features never read its values)."""
    out = np.empty_like(values_sorted)
    out[1:] = values_sorted[:-1]
    out[first] = history_values
    return out


def _prior_gaps(history: "IdHistory", known: int, rows: np.ndarray, first_position: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The gaps that began before the chunk: per ID seen before it, its history (frames,
    regular transitions and their microseconds, last timestamp; gathered, so copies that the
    history's advance leaves as they are) and the position of its first frame in the chunk
    (``n``: none)."""
    seen = np.flatnonzero(history.seen[:known] >= 1)
    next_position = np.full(known, n, np.int64)
    old = rows < known
    next_position[rows[old]] = first_position[old]
    return {
        "prior_frames": history.seen[seen],
        "prior_regular": history.regular[seen],
        "prior_regular_us": history.regular_us[seen],
        "prior_last_ts": history.last_ts[seen],
        "prior_next": next_position[seen],
    }


def _advance(history: "IdHistory", rows: np.ndarray, first: np.ndarray, order: np.ndarray, advance: int, ts_sorted: np.ndarray, ia_sorted: np.ndarray, dlc_sorted: np.ndarray, words_sorted: np.ndarray, regular_upto: np.ndarray, regular_us_upto: np.ndarray, warmup: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Move ``history`` past the chunk's first ``advance`` frames: per ID, the frames among
    them (a prefix of its frames in the chunk, as they are in time order), its last one, and
    its warm-up over them (``warmup``, per ID of the chunk)."""
    if not len(first):
        return
    kept = np.add.reduceat((order < advance).astype(np.int64), first)
    some = kept > 0
    rows, kept = rows[some], kept[some]
    last = first[some] + kept - 1
    history.advance(rows, history.seen[rows] + kept, regular_upto[last], regular_us_upto[last], tuple(part[some] for part in warmup), ts_sorted[last], ia_sorted[last], dlc_sorted[last], words_sorted[last])


def _before_in_group(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Per element, the sum of the integer ``values`` before it in its group (groups are runs
    starting at ``group_start``): one cumulative sum, exact, as integers are."""
    before = np.cumsum(values)
    before -= values
    before -= before[group_start]
    return before


def payload_entropy(payload: np.ndarray, dlc: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each frame's byte values over its DLC bytes (``_entropy_rows``).

    Random fuzzing payloads approach 3 bits; real signals with constant bytes stay low.
    Real traffic repeats payloads a lot, so the entropy is computed once per distinct
    (payload, DLC), through the table of ``_entropy_rows``'s values the live builder reads
    (``stream_state.payload_entropy_lookup``: the same bits), and gathered back.
    """
    from canids.graphs.stream_state import payload_entropy_lookup  # here: stream_state imports this module

    if len(payload) == 0:
        return np.zeros(0, np.float32)
    first, inverse = factorize(payload_words(payload))
    entropy = payload_entropy_lookup(payload[first], dlc[first])[inverse]
    other_dlc = np.flatnonzero(dlc != dlc[first][inverse])  # same bytes, different DLC: rare
    if len(other_dlc):
        entropy[other_dlc] = payload_entropy_lookup(payload[other_dlc], dlc[other_dlc])
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


#: The time of an ID's next frame when it has none (s): never, but finite.
_NO_NEXT_FRAME_S = 1e15


def overdue_ids(ff: dict[str, np.ndarray], ts: np.ndarray, end: np.ndarray) -> np.ndarray:
    """How many IDs are ``formulas.overdue`` at each window's last frame (positions ``end``,
    ascending), from every frame of the capture up to and including it: the state a live
    builder holds after that window.

    An ID can only be overdue in a gap after one of its frames that is itself ``late``
    before the next frame comes (timestamps never decrease within a capture, so no window
    end inside a shorter gap is later). Such gaps are rare on a healthy bus, so only the
    (gap, window end) pairs inside them are checked, with the same ``overdue`` a live
    builder calls: linear in the frames, not in frames x IDs. The gaps are those after a
    frame of the chunk (``frame_features``'s ``id_order`` and ``*_upto_sorted``) and those
    that began before it (``prior_*``: they reach the ID's first frame in the chunk).
    """
    order = ff["id_order"]
    n = len(order)
    count = np.zeros(len(end), np.int64)
    if n == 0 or len(end) == 0:
        return count
    id_sorted = ff["can_id"][order]
    same_as_next = np.r_[id_sorted[1:] == id_sorted[:-1], False]
    # Every gap: from a frame (or from before the chunk, position 0) to the ID's next frame
    # (position n, at a time later than any capture's: none; finite, as inf * 0 is NaN).
    from_position = np.r_[order, np.zeros(len(ff["prior_next"]), np.int64)]
    next_position = np.r_[np.where(same_as_next, np.r_[order[1:], n], n), ff["prior_next"]]
    frames = np.r_[ff["frames_upto_sorted"], ff["prior_frames"]]
    regular_count = np.r_[ff["regular_upto_sorted"], ff["prior_regular"]]
    regular_us = np.r_[ff["regular_us_upto_sorted"], ff["prior_regular_us"]]
    last_ts = np.r_[ts[order], ff["prior_last_ts"]]
    # A gap with a window end where the ID is overdue is late by its next frame (or, after
    # the ID's last frame, ever).
    gap = np.flatnonzero(late(frames, regular_count, regular_us, last_ts, np.r_[ts, _NO_NEXT_FRAME_S][next_position]))
    if len(gap) == 0:
        return count
    lo = np.searchsorted(end, from_position[gap], side="left")
    hi = np.searchsorted(end, next_position[gap], side="left")
    pairs = hi - lo
    which_gap = np.repeat(np.arange(len(gap)), pairs)
    window = np.arange(pairs.sum()) - np.repeat(np.cumsum(pairs) - pairs, pairs) + lo[which_gap]
    g = gap[which_gap]
    hit = overdue(frames[g], regular_count[g], regular_us[g], last_ts[g], ts[end[window]])
    return np.bincount(window[hit], minlength=len(end))


def window_labels(frame_labels: np.ndarray, ts: np.ndarray, missed: np.ndarray | None) -> np.ndarray:
    """A window is an attack window when it holds an attack frame, or, for a capture with
    recorded suppression episodes, when the silenced ID misses an expected frame inside it
    (``missed``: the times ``_missed_frames`` found; a suppression attack removes frames
    and labels none)."""
    y = frame_labels.any(axis=1)
    if missed is not None:
        y |= window_misses_a_frame(ts[:, 0], ts[:, -1], missed)
    return y


def _missed_frames(cap: Capture) -> np.ndarray | None:
    """The expected frames a recorded suppression removed from the WHOLE capture
    (``canids.data.suppress``), or None for a capture without one."""
    if "suppressed" not in cap.meta:
        return None
    return missed_frame_times(cap.timestamp, cap.can_id, Suppression.from_meta(cap.meta["suppressed"]))


def window_graphs(cap: Capture, ff: dict[str, np.ndarray], size: int, stride: int, capture_index: int, missed: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The window graphs of ``cap`` (a ``GraphSet`` part) from its per-frame features ``ff``;
    ``missed``: the suppressed frames of the capture ``cap`` is a chunk of (``window_labels``)."""
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
        "y": window_labels(labels, ts, missed).astype(np.int64),
        "attack_frames": labels.sum(axis=1).astype(np.int64),
        "capture": np.full(n_win, capture_index, np.int64),
        "t_start": ts[:, 0].astype(np.float64),
    }
