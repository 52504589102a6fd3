"""The CAN ID vocabulary, learnt from attack-free traffic only.

Building it from attack traffic (fuzzing touches all 2,048 IDs) made every ID "known" in
the pipeline this project replaces, so the unknown-ID path never fired. Index 0 is the
explicit unknown bucket: an unseen vehicle's IDs all land there and are visible as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from canids.data.frames import Capture

UNKNOWN_INDEX = 0


@dataclass
class Vocabulary:
    """Known CAN IDs (sorted); vocabulary index = position + 1, 0 = unknown.

    Only the optional ID embedding and VGAE ID reconstruction use it (``embed_dim``,
    ``id_weight``): the graph features are vehicle-agnostic and need no per-ID table.
    """

    can_ids: np.ndarray

    @property
    def size(self) -> int:
        """Embedding table size, including the unknown bucket."""
        return len(self.can_ids) + 1

    def index(self, can_id: np.ndarray) -> np.ndarray:
        """Vocabulary index per frame; 0 for IDs never seen in attack-free traffic."""
        pos = np.searchsorted(self.can_ids, can_id)
        pos_clipped = np.minimum(pos, max(len(self.can_ids) - 1, 0))
        known = (pos < len(self.can_ids)) & (self.can_ids[pos_clipped] == can_id) if len(self.can_ids) else np.zeros(len(can_id), bool)
        return np.where(known, pos_clipped + 1, UNKNOWN_INDEX).astype(np.int64)

    def to_dict(self) -> dict:
        return {"can_ids": self.can_ids.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabulary":
        return cls(can_ids=np.asarray(data["can_ids"], np.int64))


#: IDs below this are collected through a presence table (linear); wider ones by ``np.unique``'s sort.
_TABLE_IDS = 1 << 24


def build_vocabulary(captures: list[Capture]) -> Vocabulary:
    """Learn the vocabulary from attack-free captures (frames labelled attack are ignored).

    A capture has millions of frames and a few dozen IDs, so the IDs are marked in a presence
    table rather than sorted with every frame (``np.unique``), where their values allow one.
    """
    if not captures:
        raise ValueError("cannot build a CAN ID vocabulary: no attack-free training captures")
    ids = np.concatenate([c.can_id[c.label == 0].astype(np.int64) for c in captures])
    if len(ids) == 0 or ids.min() < 0 or ids.max() >= _TABLE_IDS:
        return Vocabulary(can_ids=np.unique(ids))
    present = np.zeros(int(ids.max()) + 1, bool)
    present[ids] = True
    return Vocabulary(can_ids=np.flatnonzero(present).astype(np.int64))


def known_id_share(node_vocab: np.ndarray, node_ptr: np.ndarray) -> np.ndarray:
    """Per window (nodes ``node_ptr[i]:node_ptr[i+1]``), the share of its CAN IDs that are in the
    vocabulary, float64: 1 on the traffic of the vehicle the vocabulary came from, low on another
    vehicle's (``canids.stages.fusion_rule.familiar``). Unknown IDs injected by an attack lower it
    too; such windows are then judged by the anomaly detector alone, which sees new IDs anyway.
    """
    known = np.r_[0, np.cumsum(np.asarray(node_vocab) != UNKNOWN_INDEX, dtype=np.int64)]
    ptr = np.asarray(node_ptr, np.int64)
    return (known[ptr[1:]] - known[ptr[:-1]]) / np.maximum(np.diff(ptr), 1)


def window_known_id_share(node_vocab: np.ndarray) -> float:
    """``known_id_share`` of one window's nodes, as a Python float (the same float64 division)."""
    return np.count_nonzero(node_vocab != UNKNOWN_INDEX) / max(len(node_vocab), 1)
