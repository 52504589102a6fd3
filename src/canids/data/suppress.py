"""Labels for suppression attacks, which remove frames and so label none.

A suppression attack silences one CAN ID for a while. The capture then holds no injected
frame, so its ``attack`` column is all 0 (the real can-train-and-test ``test_05_suppress``
is published that way) and a per-frame label cannot say where the attack is. Where the
silenced ID and the episodes are known (the synthetic generator records them in its
``generator.json``), a window is labelled an attack window when the silenced ID misses at
least one expected frame inside it: the rule ``window_misses_a_frame`` applies.

The expected frames are those the ID would have sent had it not been silenced: its period
is measured from the capture itself (median gap between its frames outside the episodes,
so no vehicle table is needed), and they follow its last frame before each episode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The file a generated dataset's root holds with its suppression episodes.
EPISODES_FILE = "generator.json"


@dataclass(frozen=True)
class Suppression:
    """One capture's silenced ID and the (start, end) timestamps it was silent."""

    can_id: int
    episodes: tuple[tuple[float, float], ...]

    def to_meta(self) -> dict:
        return {"can_id": self.can_id, "episodes": [list(e) for e in self.episodes]}

    @classmethod
    def from_meta(cls, meta: dict) -> "Suppression":
        return cls(int(meta["can_id"]), tuple((float(s), float(e)) for s, e in meta["episodes"]))


def load_suppressions(root: Path) -> dict[str, Suppression]:
    """``{relative capture path: Suppression}`` from ``root/generator.json``; empty without one.

    Raises ValueError naming the file when an entry is malformed: a silently unlabelled
    split would report false alarms where attacks are.
    """
    path = Path(root) / EPISODES_FILE
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text()).get("suppress", [])
        return {e["path"]: Suppression(int(str(e["target_id"]), 16), tuple((float(s), float(t)) for s, t in e["episodes"])) for e in entries}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: bad 'suppress' entry ({err!r}); expected a list of {{path, target_id (hex), episodes: [[start, end], ...]}}") from err


def missed_frame_times(timestamp: np.ndarray, can_id: np.ndarray, suppression: Suppression) -> np.ndarray:
    """Times at which the silenced ID should have sent a frame but did not (sorted)."""
    own = np.sort(timestamp[can_id == suppression.can_id])
    if len(own) < 2:
        return np.zeros(0)
    inside = np.zeros(len(own), bool)
    for start, end in suppression.episodes:
        inside |= (own >= start) & (own <= end)
    gaps = np.diff(own)
    outside_gaps = gaps[~inside[1:] & ~inside[:-1]]
    period = float(np.median(outside_gaps if len(outside_gaps) else gaps))
    if not period > 0:
        return np.zeros(0)
    missed = []
    for start, end in suppression.episodes:
        before = own[own < start]
        first = before[-1] if len(before) else start - period
        times = first + np.arange(1, int((end - first) / period) + 1) * period
        # an expected time is missed when no frame of the ID came within half a period of it
        nearest = np.searchsorted(own, times)
        gap_after = np.where(nearest < len(own), own[np.minimum(nearest, len(own) - 1)] - times, np.inf)
        gap_before = np.where(nearest > 0, times - own[np.maximum(nearest - 1, 0)], np.inf)
        missed.append(times[np.minimum(gap_after, gap_before) > period / 2])
    return np.sort(np.concatenate(missed)) if missed else np.zeros(0)


def window_misses_a_frame(window_start: np.ndarray, window_end: np.ndarray, missed: np.ndarray) -> np.ndarray:
    """Per window: does ``[start, end]`` (its first and last frame's times) contain a missed frame?"""
    if len(missed) == 0:
        return np.zeros(len(window_start), bool)
    return np.searchsorted(missed, window_start, side="left") < np.searchsorted(missed, window_end, side="right")
