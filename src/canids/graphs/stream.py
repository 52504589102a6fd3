"""Window graphs from a live bus: frames in, one graph out every ``window_size`` frames.

``build_graphs`` turns a whole recorded capture into windows at once. A vehicle sees frames
arrive and must decide on each window as it completes, holding only what the features need:
every feature compares a frame with the previous one or two frames of the same ID, so the
builder keeps, per CAN ID, its last two frames. When a window is full it puts those frames
in front of the window's own and runs the very same code as ``build_graphs``
(``frame_features`` and ``window_graphs``), so the graphs are identical, bit for bit
(``tests/test_streaming.py`` holds them to it), and there is one feature implementation,
not two. NumPy only: with ``canids.stages.streaming`` it makes a detector without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from canids.data.frames import Capture
from canids.graphs.build import frame_features, window_graphs
from canids.graphs.vocab import Vocabulary


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
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._n_pending = 0
        # Per CAN ID, its last two frames (timestamp, dlc, payload), oldest first.
        self._history: dict[int, list[tuple[float, int, np.ndarray]]] = {}

    def push(self, timestamp: np.ndarray, can_id: np.ndarray, dlc: np.ndarray, payload: np.ndarray, label: np.ndarray | None = None) -> list[WindowGraph]:
        """Add frames (in bus order; any number) and return the windows they complete."""
        timestamp = np.asarray(timestamp, np.float64).reshape(-1)
        n = len(timestamp)
        columns = (timestamp, np.asarray(can_id, np.int32).reshape(-1), np.asarray(dlc, np.uint8).reshape(-1), np.asarray(payload, np.uint8).reshape(n, 8), np.zeros(n, np.uint8) if label is None else np.asarray(label, np.uint8).reshape(-1))
        if any(len(c) != n for c in columns):
            raise ValueError(f"push: timestamp, can_id, dlc, payload [n, 8] and label need one row per frame; got {[len(c) for c in columns]}")
        if n == 0:
            return []
        if self._t0 is None:
            self._t0 = float(timestamp[0])
        self._pending.append(columns)
        self._n_pending += n
        windows: list[WindowGraph] = []
        if self._n_pending < self.window_size:
            return windows
        merged = [np.concatenate(parts) for parts in zip(*self._pending)]
        start = 0
        while self._n_pending - start >= self.window_size:
            windows.append(self._window([column[start : start + self.window_size] for column in merged]))
            start += self.window_size
        self._pending = [tuple(column[start:] for column in merged)]
        self._n_pending -= start
        return windows

    def _window(self, frames: list[np.ndarray]) -> WindowGraph:
        timestamp, can_id, dlc, payload, label = frames
        context = [(int(i), *frame) for i in np.unique(can_id) for frame in self._history.get(int(i), ())]
        k = len(context)
        ctx_id = np.array([c[0] for c in context], np.int32)
        ctx_ts = np.array([c[1] for c in context], np.float64)
        ctx_dlc = np.array([c[2] for c in context], np.uint8)
        ctx_payload = np.array([c[3] for c in context], np.uint8).reshape(k, 8)
        # The context frames go first, each ID's in time order: every feature looks only at
        # earlier frames of the same ID, so they stand in for the whole past of the capture.
        span = Capture(
            timestamp=np.r_[ctx_ts, timestamp],
            can_id=np.r_[ctx_id, can_id],
            dlc=np.r_[ctx_dlc, dlc],
            payload=np.concatenate([ctx_payload, payload]),
            label=np.r_[np.zeros(k, np.uint8), label],
        )
        features = {name: values[k:] for name, values in frame_features(span, self.vocab, t0=self._t0).items()}
        window = Capture(timestamp=timestamp, can_id=can_id, dlc=dlc, payload=payload, label=label)
        part = window_graphs(window, features, self.window_size, self.window_size, 0)
        for i in range(len(timestamp)):
            past = self._history.setdefault(int(can_id[i]), [])
            past.append((float(timestamp[i]), int(dlc[i]), payload[i]))
            if len(past) > 2:
                del past[0]
        return WindowGraph(part["x"], part["edge_index"], part["edge_attr"], part["u"][0], part["node_vocab"], float(part["t_start"][0]), int(part["y"][0]))
