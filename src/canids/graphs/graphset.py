"""``GraphSet``: many window graphs stored as flat tensors, sliced into PyG batches on demand.

Storing windows collated (one big node table plus pointers) keeps a 20 k-window set a
handful of tensors, and ``batch`` gathers any set of windows with a few vectorised index
operations instead of building PyG ``Data`` objects one by one. On disk a set is a sequence
of shards (``canids.graphs.shards``); a loaded set's node and edge tables stay in the mapped
shard files (``shards.FileRows``, indexed like the tensors they stand for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from canids.graphs.features import EDGE_FEATURES, GRAPH_FEATURES, NODE_FEATURES  # noqa: F401  (re-exported)

_TENSOR_FIELDS = ("x", "node_vocab", "node_can_id", "edge_index", "edge_attr", "node_ptr", "edge_ptr", "u", "y", "attack_frames", "capture", "attack_type", "t_start")


@dataclass
class GraphSet:
    """Windows as collated tensors; window ``i`` owns nodes ``node_ptr[i]:node_ptr[i+1]``.

    ``edge_index`` holds global node indices within this set.
    """

    x: torch.Tensor
    node_vocab: torch.Tensor
    node_can_id: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    node_ptr: torch.Tensor
    edge_ptr: torch.Tensor
    u: torch.Tensor
    y: torch.Tensor
    attack_frames: torch.Tensor
    capture: torch.Tensor
    attack_type: torch.Tensor
    t_start: torch.Tensor
    capture_names: list[str] = field(default_factory=list)
    attack_types: list[str] = field(default_factory=lambda: ["normal"])
    window_size: int = 100

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_attack(self) -> int:
        return int(self.y.sum())

    # ------------------------------------------------------------------ building
    @staticmethod
    def empty_part() -> dict[str, np.ndarray]:
        return {
            "x": np.zeros((0, len(NODE_FEATURES)), np.float32),
            "node_vocab": np.zeros(0, np.int64),
            "node_can_id": np.zeros(0, np.int64),
            "edge_index": np.zeros((2, 0), np.int64),
            "edge_attr": np.zeros((0, len(EDGE_FEATURES)), np.float32),
            "node_ptr": np.zeros(1, np.int64),
            "edge_ptr": np.zeros(1, np.int64),
            "u": np.zeros((0, len(GRAPH_FEATURES)), np.float32),
            "y": np.zeros(0, np.int64),
            "attack_frames": np.zeros(0, np.int64),
            "capture": np.zeros(0, np.int64),
            "attack_type": np.zeros(0, np.int64),
            "t_start": np.zeros(0, np.float64),
        }

    @classmethod
    def concatenate_parts(cls, parts: list[dict[str, np.ndarray]], capture_names: list[str], attack_types: list[str], window_size: int) -> "GraphSet":
        """Join per-capture parts, shifting node indices and pointers."""
        parts = parts or [cls.empty_part()]
        node_offset, edge_offset = 0, 0
        node_ptrs, edge_ptrs, edge_indices = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], []
        for part in parts:
            node_ptrs.append(part["node_ptr"][1:] + node_offset)
            edge_ptrs.append(part["edge_ptr"][1:] + edge_offset)
            edge_indices.append(part["edge_index"] + node_offset)
            node_offset += len(part["x"])
            edge_offset += part["edge_attr"].shape[0]
        cat = {name: np.concatenate([p[name] for p in parts]) for name in _TENSOR_FIELDS if name not in ("node_ptr", "edge_ptr", "edge_index")}
        cat["node_ptr"] = np.concatenate(node_ptrs)
        cat["edge_ptr"] = np.concatenate(edge_ptrs)
        cat["edge_index"] = np.concatenate(edge_indices, axis=1)
        return cls(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in cat.items()}, capture_names=capture_names, attack_types=attack_types, window_size=window_size)

    @classmethod
    def concat(cls, sets: list["GraphSet"]) -> "GraphSet":
        """Join sets built separately (capture and attack-type indices are re-mapped)."""
        names: list[str] = []
        types = sorted({t for s in sets for t in s.attack_types})
        parts = []
        for s in sets:
            part = {k: getattr(s, k).numpy() for k in _TENSOR_FIELDS}
            part["node_ptr"] = part["node_ptr"] - part["node_ptr"][0]
            part["edge_ptr"] = part["edge_ptr"] - part["edge_ptr"][0]
            part["capture"] = part["capture"] + len(names)
            remap = np.array([types.index(t) for t in s.attack_types], np.int64)
            part["attack_type"] = remap[part["attack_type"]] if len(part["attack_type"]) else part["attack_type"]
            names.extend(s.capture_names)
            parts.append(part)
        return cls.concatenate_parts(parts, names, types, sets[0].window_size if sets else 100)

    # ------------------------------------------------------------------ access
    def window_range(self, start: int, stop: int) -> "GraphSet":
        """Windows ``start:stop`` as a self-contained set (pointers from 0, local node indices): a slice, not a gather."""
        n0, n1 = int(self.node_ptr[start]), int(self.node_ptr[stop])
        e0, e1 = int(self.edge_ptr[start]), int(self.edge_ptr[stop])
        return GraphSet(
            x=self.x[n0:n1],
            node_vocab=self.node_vocab[n0:n1],
            node_can_id=self.node_can_id[n0:n1],
            edge_index=self.edge_index[:, e0:e1] - n0,
            edge_attr=self.edge_attr[e0:e1],
            node_ptr=self.node_ptr[start : stop + 1] - n0,
            edge_ptr=self.edge_ptr[start : stop + 1] - e0,
            **{k: getattr(self, k)[start:stop] for k in ("u", "y", "attack_frames", "capture", "attack_type", "t_start")},
            capture_names=list(self.capture_names),
            attack_types=list(self.attack_types),
            window_size=self.window_size,
        )

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> "GraphSet":
        """A new GraphSet holding the given windows (in the given order)."""
        batch = self.batch(index)
        counts_n = torch.bincount(batch.batch, minlength=batch.num_graphs) if batch.num_graphs else torch.zeros(0, dtype=torch.long)
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        edge_counts = (self.edge_ptr[idx + 1] - self.edge_ptr[idx]) if len(idx) else torch.zeros(0, dtype=torch.long)
        return GraphSet(
            x=batch.x,
            node_vocab=batch.node_vocab,
            node_can_id=batch.node_can_id,
            edge_index=batch.edge_index,
            edge_attr=batch.edge_attr,
            node_ptr=torch.cat([torch.zeros(1, dtype=torch.long), counts_n.cumsum(0)]),
            edge_ptr=torch.cat([torch.zeros(1, dtype=torch.long), edge_counts.cumsum(0)]),
            u=batch.u,
            y=batch.y,
            attack_frames=self.attack_frames[idx],
            capture=self.capture[idx],
            attack_type=self.attack_type[idx],
            t_start=self.t_start[idx],
            capture_names=list(self.capture_names),
            attack_types=list(self.attack_types),
            window_size=self.window_size,
        )

    def batch(self, index: torch.Tensor | np.ndarray | list[int]):
        """Gather windows into one PyG ``Batch``-compatible ``Data`` (x, edge_index, batch, ptr, u, y)."""
        from torch_geometric.data import Batch

        idx = torch.as_tensor(np.asarray(index), dtype=torch.long).reshape(-1)
        n_start, n_end = self.node_ptr[idx], self.node_ptr[idx + 1]
        e_start, e_end = self.edge_ptr[idx], self.edge_ptr[idx + 1]
        n_count, e_count = n_end - n_start, e_end - e_start
        node_sel = _ranges(n_start, n_count)
        edge_sel = _ranges(e_start, e_count)
        new_ptr = torch.cat([torch.zeros(1, dtype=torch.long), n_count.cumsum(0)])
        graph_of_edge = torch.repeat_interleave(torch.arange(len(idx)), e_count)
        shift = (new_ptr[:-1] - n_start)[graph_of_edge]
        batch = Batch(
            x=self.x[node_sel],
            edge_index=self.edge_index[:, edge_sel] + shift,
            edge_attr=self.edge_attr[edge_sel],
            node_vocab=self.node_vocab[node_sel],
            node_can_id=self.node_can_id[node_sel],
            u=self.u[idx],
            y=self.y[idx],
            window=idx,
            batch=torch.repeat_interleave(torch.arange(len(idx)), n_count),
            ptr=new_ptr,
        )
        batch._num_graphs = len(idx)
        return batch

    def summary(self) -> dict:
        n = len(self)
        return {
            "n_windows": n,
            "n_attack_windows": self.n_attack,
            "n_captures": len(self.capture_names),
            "nodes_per_window": float((self.node_ptr[-1] - self.node_ptr[0]) / max(n, 1)),
            "edges_per_window": float((self.edge_ptr[-1] - self.edge_ptr[0]) / max(n, 1)),
            "attack_types": {t: int(((self.attack_type == i) & (self.y == 1)).sum()) for i, t in enumerate(self.attack_types) if t != "normal"},
        }


def _ranges(start: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Concatenate ``arange(s, s + c)`` for every (s, c) pair without a Python loop."""
    if len(count) == 0:
        return torch.zeros(0, dtype=torch.long)
    total = int(count.sum())
    offsets = torch.repeat_interleave(start - torch.cat([torch.zeros(1, dtype=torch.long), count.cumsum(0)[:-1]]), count)
    return torch.arange(total) + offsets
