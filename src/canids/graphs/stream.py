"""Window graphs from a live bus: frames in, one graph out every ``window_size`` frames.

``build_graphs`` turns a whole recorded capture into windows at once. A vehicle sees frames
arrive and must decide on each window as it completes, at line rate, holding only what the
features need: every feature compares a frame with the previous one or two frames of the
same ID, so the builder keeps one row of state per CAN ID (``stream_state.IdHistory``).

A window's graph is computed from its frames and those rows directly (``stream_window``),
with a few hundred NumPy operations on arrays of ``window_size`` elements: one stable sort
by ID groups the frames both for the per-frame features (each frame's predecessor is the
one before it in its group, or the ID's row) and for the nodes. Rebuilding a small capture
per window and rerunning the batch code cost 4x more. The formulas themselves are the ones
``build.py`` calls (``graphs.formulas``: ``timing_features``, ``payload_change``,
``node_features``, ``edge_features``, ``graph_features``), so there is one definition of
each feature, and the graphs are identical to ``build_graphs``'s, bit for bit
(``tests/test_streaming.py`` holds them to it).
NumPy only: with ``canids.stages.streaming`` it makes a detector without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from canids.graphs.stream_state import IdHistory
from canids.graphs.stream_window import window_graph
from canids.graphs.vocab import Vocabulary

_Frames = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class WindowGraph:
    """One window's graph, as ``StreamingDetector.decide`` takes it, with its start time and label."""

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray
    u: np.ndarray
    node_vocab: np.ndarray
    t_start: float
    label: int

    def arrays(self) -> tuple[np.ndarray, ...]:
        """``(x, edge_index, edge_attr, u, node_vocab)``: ``detector.decide(*window.arrays())``."""
        return self.x, self.edge_index, self.edge_attr, self.u, self.node_vocab


class StreamingGraphBuilder:
    """Accumulates frames of ONE capture (one bus, one recording) and emits its window graphs."""

    def __init__(self, vocab: Vocabulary, window_size: int) -> None:
        if window_size < 2:
            raise ValueError(f"window_size must be >= 2, got {window_size}")
        self.vocab = vocab
        self.window_size = window_size
        self._t0: float | None = None  # the capture's first timestamp: the warm-up clock
        self._pending: list[_Frames] = []  # frames of the window being filled
        self._n_pending = 0
        self._history = IdHistory(vocab)

    def push(self, timestamp: np.ndarray, can_id: np.ndarray, dlc: np.ndarray, payload: np.ndarray, label: np.ndarray | None = None) -> list[WindowGraph]:
        """Add frames (in bus order; any number) and return the windows they complete."""
        frames = _columns(timestamp, can_id, dlc, payload, label)
        n = len(frames[0])
        if n == 0:
            return []
        if self._t0 is None:
            self._t0 = float(frames[0][0])
        size = self.window_size
        if n == size and not self._n_pending:  # a window-aligned feed: the frames are the window
            return [self._window(*frames)]
        if self._n_pending:  # join the partial window
            frames = tuple(np.concatenate(parts) for parts in zip(*self._pending, frames))
            n += self._n_pending
        done = n - n % size
        windows = [self._window(*(c[start : start + size] for c in frames)) for start in range(0, done, size)]
        self._pending = [tuple(c[done:] for c in frames)] if done < n else []
        self._n_pending = n - done
        return windows

    def _window(self, timestamp: np.ndarray, can_id: np.ndarray, dlc: np.ndarray, payload: np.ndarray, label: np.ndarray) -> WindowGraph:
        x, edge_index, edge_attr, u, node_vocab = window_graph(self._history, self._t0, timestamp, can_id, dlc, payload)
        return WindowGraph(x, edge_index, edge_attr, u, node_vocab, float(timestamp[0]), int(np.count_nonzero(label) > 0))


def _columns(timestamp, can_id, dlc, payload, label) -> _Frames:
    """The pushed frames as the dtypes ``Capture`` holds, one row per frame (else ValueError)."""
    timestamp = _flat(timestamp, np.float64)
    n = len(timestamp)
    payload = np.asarray(payload, np.uint8)
    columns = (timestamp, _flat(can_id, np.int32), _flat(dlc, np.uint8), payload if payload.shape == (n, 8) else payload.reshape(n, 8), np.zeros(n, np.uint8) if label is None else _flat(label, np.uint8))
    if len(columns[1]) != n or len(columns[2]) != n or len(columns[4]) != n:
        raise ValueError(f"push: timestamp, can_id, dlc, payload [n, 8] and label need one row per frame; got {[len(c) for c in columns]}")
    return columns


def _flat(values, dtype) -> np.ndarray:
    """``values`` as a 1-D array of ``dtype`` (no new view when it already is one: a push
    per window makes this per-window overhead)."""
    values = np.asarray(values, dtype)
    return values if values.ndim == 1 else values.reshape(-1)
