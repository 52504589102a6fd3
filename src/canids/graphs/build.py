"""Vectorised graph building: one capture's frames -> windows -> node/edge tensors.

A window is ``window_size`` consecutive frames of ONE capture (windows never cross a file
boundary because timestamps restart per file). Node = distinct CAN ID in the window,
directed edge = transition between consecutive frames' IDs. Everything is computed with
whole-array numpy operations over all windows of a capture at once: a Python loop per
window would cap preprocessing at a few thousand windows per second.
"""

from __future__ import annotations

import numpy as np

from canids.data.frames import Capture
from canids.graphs.graphset import EDGE_FEATURES, GRAPH_FEATURES, NODE_FEATURES, GraphSet
from canids.graphs.vocab import FALLBACK_PERIOD_S, UNKNOWN_INDEX, Vocabulary

_LOG_RATIO_CLIP = 6.0


def build_graphs(captures: list[Capture], vocab: Vocabulary, window_size: int = 100, stride: int | None = None) -> GraphSet:
    """Build the windows of several captures into one ``GraphSet`` (capture order kept)."""
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


def frame_features(cap: Capture, vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Per-frame quantities computed once per capture, before windowing.

    Inter-arrival is measured against the previous frame of the same ID anywhere in the
    capture (not only in the window), relative to that ID's normal period, so a spoofed ID
    sent at 5x its rate shows log-ratio ~ -1.6 even if it appears once per window.
    """
    n = len(cap)
    can_id = cap.can_id.astype(np.int64)
    voc = vocab.index(can_id)
    known = voc != UNKNOWN_INDEX
    period = np.where(known, vocab.period_s[np.maximum(voc - 1, 0)] if len(vocab.can_ids) else FALLBACK_PERIOD_S, FALLBACK_PERIOD_S)

    order = np.lexsort((np.arange(n), can_id))
    id_sorted = can_id[order]
    has_prev_sorted = np.r_[False, id_sorted[1:] == id_sorted[:-1]]
    ia_sorted = np.r_[0.0, np.diff(cap.timestamp[order])]
    payload_sorted = cap.payload[order]
    changed_sorted = np.r_[False, np.any(payload_sorted[1:] != payload_sorted[:-1], axis=1)]
    has_prev = np.empty(n, bool)
    has_prev[order] = has_prev_sorted
    ia = np.empty(n)
    ia[order] = ia_sorted
    changed = np.empty(n, bool)
    changed[order] = changed_sorted & has_prev_sorted

    ratio = np.where(has_prev, np.maximum(ia, 1e-6) / period, 1.0)
    log_ratio = np.clip(np.log(ratio), -_LOG_RATIO_CLIP, _LOG_RATIO_CLIP)

    const = vocab.constant_value[np.maximum(voc - 1, 0)] if len(vocab.can_ids) else np.full((n, 8), -1, np.int16)
    const_mask = (const >= 0) & known[:, None]
    violations = (const_mask & (cap.payload.astype(np.int16) != const)).sum(axis=1)
    n_const = const_mask.sum(axis=1)

    dt_next = np.r_[np.diff(cap.timestamp), 0.0]
    return {
        "can_id": can_id,
        "vocab": voc,
        "known": known.astype(np.float32),
        "log_ratio": log_ratio.astype(np.float32),
        "early": (log_ratio < np.log(0.5)).astype(np.float32),
        "changed": changed.astype(np.float32),
        "entropy": payload_entropy(cap.payload, cap.dlc),
        "violation": np.where(n_const > 0, violations / np.maximum(n_const, 1), 0.0).astype(np.float32),
        "dt_next_ms": (np.maximum(dt_next, 0.0) * 1e3).astype(np.float32),
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


def _build_capture(cap: Capture, vocab: Vocabulary, size: int, stride: int, capture_index: int) -> dict[str, np.ndarray]:
    n = len(cap)
    n_win = (n - size) // stride + 1 if n >= size else 0
    if n_win <= 0:
        return GraphSet.empty_part()
    ff = frame_features(cap, vocab)
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
    log_ratio = ff["log_ratio"][frame_idx]
    payload = cap.payload[frame_idx].astype(np.float32) * (1.0 / 255.0)
    per_frame = np.empty((len(key), 22), np.float32)
    per_frame[:, 0] = log_ratio
    per_frame[:, 1] = log_ratio * log_ratio
    per_frame[:, 2] = cap.dlc[frame_idx] * 0.125
    per_frame[:, 3:11] = payload
    per_frame[:, 11:19] = payload * payload
    per_frame[:, 19] = ff["changed"][frame_idx]
    per_frame[:, 20] = ff["entropy"][frame_idx]
    per_frame[:, 21] = ff["violation"][frame_idx]
    means = np.add.reduceat(per_frame, starts, axis=0) / cnt[:, None]
    mean_lr, mean_lr_sq, mean_dlc = means[:, 0], means[:, 1], means[:, 2]
    payload_mean, payload_sq = means[:, 3:11], means[:, 11:19]
    mean_changed, mean_entropy, mean_violation = means[:, 19], means[:, 20], means[:, 21]
    var_lr = np.maximum(mean_lr_sq - mean_lr * mean_lr, 0.0)
    min_lr = np.minimum.reduceat(log_ratio, starts)
    first_pos = (order[starts] % size).astype(np.float32)
    payload_std = np.sqrt(np.maximum(payload_sq - payload_mean * payload_mean, 0.0)).mean(axis=1)

    node_vocab = ff["vocab"][frame_idx[starts]]
    x = np.column_stack(
        [
            np.log1p(cnt),
            cnt / size,
            (node_vocab != UNKNOWN_INDEX).astype(np.float32),
            mean_lr / _LOG_RATIO_CLIP,
            np.sqrt(var_lr) / _LOG_RATIO_CLIP,
            min_lr / _LOG_RATIO_CLIP,
            mean_dlc,
            payload_mean,
            payload_std,
            mean_changed,
            mean_entropy / 3.0,
            mean_violation,
            first_pos / size,
        ]
    ).astype(np.float32)
    assert x.shape[1] == len(NODE_FEATURES), (x.shape, len(NODE_FEATURES))

    inv_mat = inv.reshape(n_win, size)
    src, dst = inv_mat[:, :-1].ravel(), inv_mat[:, 1:].ravel()
    dt = ff["dt_next_ms"][idx].reshape(n_win, size)[:, :-1].ravel().astype(np.float64)
    edge_key = src.astype(np.int64) * n_nodes + dst
    e_key, e_inv, e_count = np.unique(edge_key, return_inverse=True, return_counts=True)
    e_src, e_dst = e_key // n_nodes, e_key % n_nodes
    e_cnt = e_count.astype(np.float64)
    dt_mean = np.bincount(e_inv, weights=dt, minlength=len(e_key)) / e_cnt
    dt_var = np.maximum(np.bincount(e_inv, weights=dt**2, minlength=len(e_key)) / e_cnt - dt_mean**2, 0.0)
    edge_attr = np.column_stack([np.log1p(e_cnt), e_cnt / (size - 1), np.log1p(dt_mean), np.log1p(np.sqrt(dt_var)), (e_src == e_dst).astype(np.float64)]).astype(np.float32)
    assert edge_attr.shape[1] == len(EDGE_FEATURES)
    edge_ptr = np.searchsorted(node_win[e_src], np.arange(n_win + 1))

    ts = cap.timestamp[idx].reshape(n_win, size)
    duration = np.maximum(ts[:, -1] - ts[:, 0], 1e-6)
    expected = size / max(vocab.frame_rate, 1.0)
    labels = cap.label[idx].reshape(n_win, size)
    nodes_per_win = np.diff(node_ptr).astype(np.float32)
    unknown_nodes = np.bincount(node_win[node_vocab == UNKNOWN_INDEX], minlength=n_win).astype(np.float32)
    u = np.column_stack(
        [
            np.clip(np.log(duration / expected), -_LOG_RATIO_CLIP, _LOG_RATIO_CLIP) / _LOG_RATIO_CLIP,
            nodes_per_win / size,
            unknown_nodes / np.maximum(nodes_per_win, 1),
            1.0 - ff["known"][idx].reshape(n_win, size).mean(axis=1),
            np.diff(edge_ptr).astype(np.float32) / size,
            ff["early"][idx].reshape(n_win, size).mean(axis=1),
            ff["violation"][idx].reshape(n_win, size).mean(axis=1),
            ff["entropy"][idx].reshape(n_win, size).mean(axis=1) / 3.0,
        ]
    ).astype(np.float32)
    assert u.shape[1] == len(GRAPH_FEATURES)
    return {
        "x": x,
        "node_vocab": node_vocab,
        "node_can_id": (node_key & 0xFFFFFFFF).astype(np.int64),
        "edge_index": np.stack([e_src, e_dst]).astype(np.int64),
        "edge_attr": edge_attr,
        "node_ptr": node_ptr.astype(np.int64),
        "edge_ptr": edge_ptr.astype(np.int64),
        "u": u,
        "y": labels.any(axis=1).astype(np.int64),
        "attack_frames": labels.sum(axis=1).astype(np.int64),
        "capture": np.full(n_win, capture_index, np.int64),
        "t_start": ts[:, 0].astype(np.float64),
    }
