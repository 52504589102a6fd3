"""The CAN ID vocabulary and each ID's normal behaviour, learnt from attack-free traffic only.

Building it from attack traffic (fuzzing touches all 2,048 IDs) made every ID "known" in
the pipeline this project replaces, so the unknown-ID path never fired. Index 0 is the
explicit unknown bucket: an unseen vehicle's IDs all land there and are visible as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from canids.data.frames import Capture

UNKNOWN_INDEX = 0
#: Period assumed for an ID never seen in attack-free traffic (seconds).
FALLBACK_PERIOD_S = 0.1


@dataclass
class Vocabulary:
    """Known IDs (sorted) and their normal timing and payload behaviour.

    Attributes:
        can_ids: sorted int64 array of known IDs; vocabulary index = position + 1.
        period_s: median inter-arrival per known ID (seconds).
        constant_value: (K, 8) int16; the byte value when the byte never changed in
            attack-free traffic, else -1. Forged payloads (spoofing, masquerade) break these.
        frame_rate: median frames per second of the attack-free captures.
    """

    can_ids: np.ndarray
    period_s: np.ndarray
    constant_value: np.ndarray
    frame_rate: float

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
        return {
            "can_ids": self.can_ids.tolist(),
            "period_s": self.period_s.tolist(),
            "constant_value": self.constant_value.tolist(),
            "frame_rate": float(self.frame_rate),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabulary":
        return cls(
            can_ids=np.asarray(data["can_ids"], np.int64),
            period_s=np.asarray(data["period_s"], np.float64),
            constant_value=np.asarray(data["constant_value"], np.int16).reshape(-1, 8),
            frame_rate=float(data["frame_rate"]),
        )


def build_vocabulary(captures: list[Capture]) -> Vocabulary:
    """Learn the vocabulary from attack-free captures (frames labelled attack are ignored)."""
    if not captures:
        raise ValueError("cannot build a CAN ID vocabulary: no attack-free training captures")
    ids, deltas, rates = [], [], []
    for cap in captures:
        keep = cap.label == 0
        ts, cid = cap.timestamp[keep], cap.can_id[keep].astype(np.int64)
        order = np.lexsort((ts, cid))
        ts_sorted, id_sorted = ts[order], cid[order]
        same = np.r_[False, id_sorted[1:] == id_sorted[:-1]]
        delta = np.r_[np.nan, np.diff(ts_sorted)]
        ids.append(id_sorted[same])
        deltas.append(delta[same])
        if len(ts) > 1 and ts[-1] > ts[0]:
            rates.append(len(ts) / (ts[-1] - ts[0]))
    all_ids = np.concatenate([c.can_id[c.label == 0].astype(np.int64) for c in captures])
    can_ids = np.unique(all_ids)
    id_of_delta = np.concatenate(ids)
    delta = np.concatenate(deltas)
    period = np.full(len(can_ids), FALLBACK_PERIOD_S)
    if len(delta):
        order = np.argsort(id_of_delta, kind="stable")
        id_of_delta, delta = id_of_delta[order], delta[order]
        bounds = np.searchsorted(id_of_delta, can_ids, side="left"), np.searchsorted(id_of_delta, can_ids, side="right")
        for k, (lo, hi) in enumerate(zip(*bounds)):
            if hi > lo:
                period[k] = max(float(np.median(delta[lo:hi])), 1e-5)
    constant = _constant_bytes(captures, can_ids)
    return Vocabulary(can_ids=can_ids, period_s=period, constant_value=constant, frame_rate=float(np.median(rates)) if rates else 2000.0)


def _constant_bytes(captures: list[Capture], can_ids: np.ndarray) -> np.ndarray:
    """Per (ID, byte): the value if it never changes across all attack-free frames, else -1."""
    lo = np.full((len(can_ids), 8), 256, np.int16)
    hi = np.full((len(can_ids), 8), -1, np.int16)
    for cap in captures:
        keep = cap.label == 0
        pos = np.searchsorted(can_ids, cap.can_id[keep].astype(np.int64))
        if not len(pos):
            continue
        order = np.argsort(pos, kind="stable")
        pos_sorted, payload = pos[order], cap.payload[keep][order].astype(np.int16)
        starts = np.flatnonzero(np.r_[True, pos_sorted[1:] != pos_sorted[:-1]])
        groups = pos_sorted[starts]
        lo[groups] = np.minimum(lo[groups], np.minimum.reduceat(payload, starts, axis=0))
        hi[groups] = np.maximum(hi[groups], np.maximum.reduceat(payload, starts, axis=0))
    return np.where(lo == hi, lo, -1).astype(np.int16)
