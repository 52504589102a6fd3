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
from canids.graphs.features import EDGE_FEATURES, GRAPH_FEATURES, NODE_FEATURES
from canids.graphs.vocab import Vocabulary

if TYPE_CHECKING:  # imported where a GraphSet is built: the streaming path (graphs.stream) runs without torch
    from canids.graphs.graphset import GraphSet

#: Inter-arrival floor (s): two frames of one ID 10 us apart are already impossible on CAN.
_MIN_IA_S = 1e-5
#: log10 inter-arrival range kept (0.1 ms .. 10 s) and the value of an ID's first sighting
#: during a capture's warm-up (a typical 30 ms period: "nothing to say").
_LOG_IA_MIN, _LOG_IA_MAX, _NEUTRAL_LOG_IA = -4.0, 1.0, -1.5
_WARMUP_S = 1.0
#: An ID silent this long and back again counts as new (fuzzing revisits IDs every few s).
_STALE_ID_S = 5.0
#: Same-ID repeats faster than this are flooding or injection on any vehicle (shortest
#: real periods are 10 ms).
_FAST_IA_S = 2e-3
_JITTER_CLIP = 6.0


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
    order = np.lexsort((np.arange(n), can_id))
    id_sorted = can_id[order]
    has_prev_sorted = np.r_[False, id_sorted[1:] == id_sorted[:-1]]
    has_prev2_sorted = has_prev_sorted & np.r_[False, has_prev_sorted[:-1]]
    ia_sorted = inter_arrival(np.r_[0.0, np.diff(ts[order])])
    prev_ia_sorted = np.r_[_MIN_IA_S, ia_sorted[:-1]]
    payload_sorted = cap.payload[order]
    dlc_sorted = cap.dlc[order]
    diff_bytes = np.zeros((n, 8), bool)
    diff_bytes[1:] = payload_sorted[1:] != payload_sorted[:-1]
    dlc_changed = np.r_[False, dlc_sorted[1:] != dlc_sorted[:-1]]
    t_rel_sorted = ts[order] - (t0 if t0 is not None else ts[0] if n else 0.0)
    log_ia_sorted, jitter_sorted, fast_sorted, new_sorted = timing_features(ia_sorted, prev_ia_sorted, has_prev_sorted, has_prev2_sorted, t_rel_sorted)
    changed_sorted, byte_change_sorted = payload_change(diff_bytes, dlc_changed, dlc_sorted, has_prev_sorted)

    def unsort(values: np.ndarray, dtype=np.float32) -> np.ndarray:
        out = np.empty(n, dtype)
        out[order] = values
        return out

    return {
        "can_id": can_id,
        "vocab": vocab.index(can_id),
        "log_ia": unsort(log_ia_sorted),
        "jitter": unsort(jitter_sorted),
        "fast": unsort(fast_sorted),
        "new_id": unsort(new_sorted),
        "changed": unsort(changed_sorted),
        "byte_change": unsort(byte_change_sorted),
        "entropy": payload_entropy(cap.payload, cap.dlc),
        "dt_next_ms": gap_ms(np.r_[np.diff(ts), 0.0]),
    }


def payload_entropy(payload: np.ndarray, dlc: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each frame's byte values over its DLC bytes.

    Random fuzzing payloads approach 3 bits; real signals with constant bytes stay low.
    Real traffic repeats payloads a lot, so the entropy is computed once per distinct
    (payload, DLC) and gathered back.
    """
    if len(payload) == 0:
        return np.zeros(0, np.float32)
    keys = np.ascontiguousarray(payload).view(np.uint64).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    entropy = _entropy_rows(payload[first], dlc[first])[inverse]
    other_dlc = np.flatnonzero(dlc != dlc[first][inverse])  # same bytes, different DLC: rare
    if len(other_dlc):
        entropy[other_dlc] = _entropy_rows(payload[other_dlc], dlc[other_dlc])
    return entropy


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
    inv = np.empty(len(key), np.int64)
    inv[order] = np.cumsum(new_node) - 1
    count = np.diff(np.r_[starts, len(key)])
    node_win = node_key >> 32
    node_ptr = np.searchsorted(node_win, np.arange(n_win + 1))
    cnt = count.astype(np.float32)

    frame_idx = idx[order]
    x = node_features(np.stack([ff[name][frame_idx] for name in NODE_FRAME_COLUMNS]), cap.payload[frame_idx], starts, cnt)
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
    u = graph_features(max_share, np.stack([ff[name][idx].reshape(n_win, size) for name in GRAPH_FRAME_COLUMNS], axis=1))
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


# --- The feature formulas, shared by ``build_graphs`` and the streaming builder ---------------
# ``graphs.stream`` computes a live window's features from per-ID state instead of a capture
# and calls these same functions, so each feature is defined once for both paths. A live
# window runs them on arrays of ~100 elements, where a NumPy call costs about a microsecond
# whatever its size: hence few calls, preallocated outputs instead of ``column_stack``, and
# no ``np.mean`` / ``np.clip`` (their Python wrappers cost more than the arithmetic). Each
# gives the bits of the plain formula it replaced (tests/test_graphs.py, and real captures
# checked against the previous code), and a transcendental function always sees a
# contiguous array (SIMD and scalar ``log`` may differ in the last bit).

#: The per-frame columns whose per-node reductions ``node_features`` takes, in this order.
NODE_FRAME_COLUMNS = ("log_ia", "jitter", "changed", "byte_change", "entropy", "new_id")
#: The per-frame columns whose window means ``graph_features`` takes, in this order.
GRAPH_FRAME_COLUMNS = ("fast", "jitter", "new_id")

#: Per DLC, which of the 8 payload bytes count for ``byte_change``, as one word per DLC laid
#: out like a frame's 8 difference flags viewed as one word.
_USED_BYTES = (np.arange(8)[None, :] < np.maximum(np.arange(256), 1)[:, None]).view(np.uint64).ravel()
#: Multiplying a word of 0/1 bytes by this sums its bytes into the top byte.
_SUM_BYTES, _TOP_BYTE = np.uint64(0x0101010101010101), np.uint64(56)
#: ``node_features``'s node statistics, one row each: the means of NODE_FRAME_COLUMNS
#: (log_ia, jitter, changed, byte_change, entropy, new_id), min log_ia, max log_ia, max
#: jitter, byte std. A feature is (statistic - offset) / scale (offset 0 / scale 1: as is),
#: and ``x``'s columns are the statistics in NODE_FEATURES order.
_STATS_OFFSET = np.array([_NEUTRAL_LOG_IA, 0, 0, 0, 0, 0, _NEUTRAL_LOG_IA, _NEUTRAL_LOG_IA, 0, 0], np.float32)[:, None]
_STATS_SCALE = np.array([_LOG_IA_MAX - _LOG_IA_MIN, _JITTER_CLIP, 1, 1, 3, 1, _LOG_IA_MAX - _LOG_IA_MIN, _LOG_IA_MAX - _LOG_IA_MIN, _JITTER_CLIP, 1], np.float32)[:, None]
_X_FROM_STATS = np.array([0, 6, 7, 1, 8, 2, 3, 4, 9, 5])
_U_SCALE = np.array([1.0, _JITTER_CLIP, 1.0], np.float32)


def inter_arrival(dt: np.ndarray) -> np.ndarray:
    """Seconds since the previous frame of the same ID, floored (see ``_MIN_IA_S``)."""
    return np.maximum(dt, _MIN_IA_S)


def timing_features(ia: np.ndarray, prev_ia: np.ndarray, has_prev: np.ndarray, has_prev2: np.ndarray, t_rel: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(log_ia, jitter, fast, new_id)`` per frame from its inter-arrival ``ia``, the same
    ID's previous inter-arrival ``prev_ia``, whether the ID had one / two earlier frames, and
    the time since the capture started ``t_rel``. Values of ``ia`` where ``has_prev`` is
    False (``prev_ia`` where ``has_prev2`` is) are never used."""
    # First sighting of an ID: "new" unless the capture is still warming up (every ID is
    # new in a capture's first second, and that is not an attack).
    warm = t_rel < _WARMUP_S
    log_ia = np.minimum(np.maximum(np.log10(ia), _LOG_IA_MIN), _LOG_IA_MAX)
    log_ia = np.where(has_prev, log_ia, np.where(warm, _NEUTRAL_LOG_IA, _LOG_IA_MAX))
    new_id = np.where(has_prev, ia > _STALE_ID_S, ~warm)
    jitter = np.minimum(np.where(has_prev2, np.abs(np.log(ia / prev_ia)), 0.0), _JITTER_CLIP)
    return log_ia, jitter, has_prev & (ia < _FAST_IA_S), new_id


def payload_change(diff_bytes: np.ndarray, dlc_changed: np.ndarray, dlc: np.ndarray, has_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(changed, byte_change)`` per frame from which of its 8 bytes and whether its DLC
    differ from the same ID's previous frame (``diff_bytes`` [n, 8] bool, ``dlc_changed``):
    any difference, and the share of its DLC bytes that differ (1 on a DLC change)."""
    diff = np.ascontiguousarray(diff_bytes).view(np.uint64).ravel()
    n_diff = ((diff & _USED_BYTES[dlc]) * _SUM_BYTES) >> _TOP_BYTE
    byte_change = np.where(dlc_changed, 1.0, n_diff / np.maximum(dlc, 1))
    changed = (diff != 0) | dlc_changed
    return changed & has_prev, np.where(has_prev, byte_change, 0.0)


def gap_ms(dt: np.ndarray) -> np.ndarray:
    """Time from a frame to the next (any ID) in ms, the edges' timing; float32."""
    return (np.maximum(dt, 0.0) * 1e3).astype(np.float32)


def node_features(frame_columns: np.ndarray, payload: np.ndarray, starts: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Node features ``x`` from the frames grouped by node: ``frame_columns``
    [``NODE_FRAME_COLUMNS``, frames] float32 and their payloads [frames, 8], a node's frames
    contiguous from ``starts[i]``, ``cnt[i]`` of them (float32)."""
    n_cols = len(frame_columns)
    # Everything summed per node, one row per quantity: the frame columns, the bytes scaled
    # to [0, 1] and their squares. reduceat reduces each row on its own, as one call per
    # quantity would, and rows keep every elementwise operation below contiguous.
    values = np.empty((n_cols + 16, payload.shape[0]), np.float32)
    values[:n_cols] = frame_columns
    values[n_cols : n_cols + 8] = payload.T
    values[n_cols : n_cols + 8] *= 1.0 / 255.0
    np.multiply(values[n_cols : n_cols + 8], values[n_cols : n_cols + 8], out=values[n_cols + 8 :])
    means = np.add.reduceat(values, starts, axis=1)
    means /= cnt
    byte_mean, byte_sq = means[n_cols : n_cols + 8], means[n_cols + 8 :]
    # Spread of each byte across the node's frames, averaged over bytes (a node's 8 bytes
    # contiguous, as the mean over them has always been taken).
    byte_var = byte_sq - byte_mean * byte_mean
    byte_std = np.sqrt(np.maximum(byte_var, 0.0, out=byte_var), out=byte_var)
    payload_std = _mean_last_axis(byte_std.T.copy())
    # No feature counts nodes or frames per ID, and none describes payload content (DLC,
    # byte values): those differ between vehicles (a Spark window holds twice the IDs of a
    # Sonata window) and made every window of an unseen vehicle look anomalous.
    stats = np.concatenate(
        [
            means[:n_cols],
            np.minimum.reduceat(values[:1], starts, axis=1),  # log_ia min
            np.maximum.reduceat(values[:2], starts, axis=1),  # log_ia max, jitter max
            payload_std[None],
        ]
    )
    stats -= _STATS_OFFSET
    stats /= _STATS_SCALE
    x = stats[_X_FROM_STATS].T.copy()
    assert x.shape[1] == len(NODE_FEATURES)
    return x


def edge_features(e_src: np.ndarray, e_dst: np.ndarray, e_count: np.ndarray, dt_sum: np.ndarray, dt_sq_sum: np.ndarray) -> np.ndarray:
    """Edge features from each edge's transition count and the sum and sum of squares of
    its transitions' ``gap_ms`` (float64, summed in frame order)."""
    stats = np.empty((3, len(e_count)))  # count, dt mean, dt std: each log1p'd
    e_cnt = stats[0]
    e_cnt[:] = e_count
    dt_mean = np.divide(dt_sum, e_cnt, out=stats[1])
    dt_var = dt_sq_sum / e_cnt
    dt_var -= dt_mean**2
    np.sqrt(np.maximum(dt_var, 0.0, out=dt_var), out=stats[2])
    edge_attr = np.empty((len(e_count), len(EDGE_FEATURES)), np.float32)
    edge_attr[:, :3] = np.log1p(stats, out=stats).T
    edge_attr[:, 3] = e_src == e_dst
    return edge_attr


def graph_features(max_share: np.ndarray, per_frame: np.ndarray) -> np.ndarray:
    """Window features ``u`` [windows, 4] from the largest node's share of the frames and the
    window's ``GRAPH_FRAME_COLUMNS`` values per frame [windows, 3, size] float32, frame order."""
    # Window features are violations only: bus load, payload entropy or byte activity of a
    # normal window are properties of the vehicle (they moved a Spark's normal windows 100x
    # in VGAE error), while fast repeats, timing jitter and new IDs are zero on any
    # healthy bus.
    means = _mean_last_axis(per_frame)
    u = np.empty((len(per_frame), len(GRAPH_FEATURES)), np.float32)
    u[:, 0] = max_share
    np.true_divide(means, _U_SCALE, out=u[:, 1:])
    return u


def _mean_last_axis(values: np.ndarray) -> np.ndarray:
    """``values.mean(axis=-1)`` computed as ``np.mean`` computes it, without its Python overhead."""
    means = np.add.reduce(values, axis=-1)
    return np.true_divide(means, np.intp(values.shape[-1]), out=means, casting="unsafe")
