"""The one in-memory representation of CAN traffic that every reader produces.

A capture is one raw file: its frames share a clock, so time deltas and windows are
only ever computed inside one capture (timestamps restart per file). Everything
downstream (graph building, vocabularies, statistics) consumes ``Capture`` objects,
so the raw formats stay confined to ``canids.data.readers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Largest valid standard (11-bit) or extended (29-bit) identifier.
MAX_CAN_ID = 0x1FFFFFFF


@dataclass
class Capture:
    """Frames of one raw capture file, as parallel numpy arrays (struct of arrays).

    Arrays are columnar because graph building is vectorised over millions of frames;
    a per-frame Python object would cost ~100x more.

    Attributes:
        timestamp: float64 seconds, non-decreasing within the capture.
        can_id: int32 arbitration id.
        dlc: uint8 data length code, 0..8.
        payload: uint8 array of shape (n, 8); bytes past ``dlc`` are zero.
        label: uint8, 1 for an injected (attack) frame, 0 otherwise.
        name: capture name (file stem), unique within a dataset split.
        split: split directory it came from (e.g. ``train_01_attack_free``).
        attack_type: attack family inferred from the file name (``dos``, ``fuzzing``,
            ``spoofing``, ...), or ``"normal"`` for attack-free captures.
        source: path of the raw file, for error messages and manifests.
        sha256: digest of the raw file bytes; identical captures are counted once.
        skipped_rows: rows dropped in lenient mode (always 0 in strict mode).
    """

    timestamp: np.ndarray
    can_id: np.ndarray
    dlc: np.ndarray
    payload: np.ndarray
    label: np.ndarray
    name: str = ""
    split: str = ""
    attack_type: str = "normal"
    source: str = ""
    sha256: str = ""
    skipped_rows: int = 0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.timestamp)
        for col in ("can_id", "dlc", "label"):
            if len(getattr(self, col)) != n:
                raise ValueError(f"{self.source or self.name}: column {col} has {len(getattr(self, col))} rows, expected {n}")
        if self.payload.shape != (n, 8):
            raise ValueError(f"{self.source or self.name}: payload shape {self.payload.shape}, expected ({n}, 8)")

    def __len__(self) -> int:
        return len(self.timestamp)

    @property
    def n_attack(self) -> int:
        return int(self.label.sum())

    @property
    def duration_s(self) -> float:
        return float(self.timestamp[-1] - self.timestamp[0]) if len(self) > 1 else 0.0

    @classmethod
    def empty(cls, **kwargs) -> "Capture":
        return cls(
            timestamp=np.zeros(0, np.float64),
            can_id=np.zeros(0, np.int32),
            dlc=np.zeros(0, np.uint8),
            payload=np.zeros((0, 8), np.uint8),
            label=np.zeros(0, np.uint8),
            **kwargs,
        )

    def slice(self, start: int, stop: int) -> "Capture":
        """Contiguous sub-capture (used for time-block validation hold-out)."""
        return Capture(
            timestamp=self.timestamp[start:stop],
            can_id=self.can_id[start:stop],
            dlc=self.dlc[start:stop],
            payload=self.payload[start:stop],
            label=self.label[start:stop],
            name=self.name,
            split=self.split,
            attack_type=self.attack_type,
            source=self.source,
            sha256=self.sha256,
            skipped_rows=0,
            meta=dict(self.meta),
        )
