"""Summary statistics of CAN traffic, to check that synthetic captures look like real ones.

The synthetic dataset is only useful if the graph windows built from it resemble real
windows (node/edge counts, periodic structure, payload entropy). These statistics are the
yardstick: ``bench/synthetic_stats.py`` computes them for synthetic and real captures and
``tests/test_synthetic.py`` asserts the synthetic ones fall inside the ranges measured on
public real captures (``REAL_RANGES``).

Everything is computed per capture (timestamps restart per file, so inter-arrival times and
windows never cross a file boundary) and vectorised with numpy: real captures have millions
of frames.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from canids.data.frames import Capture

#: Standard transmission periods of production ECUs, in milliseconds.
STANDARD_PERIODS_MS: tuple[float, ...] = (10.0, 12.5, 20.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0)

#: An ID's median inter-arrival within this relative distance of a standard period counts as it.
PERIOD_TOLERANCE = 0.08

#: An ID needs this many frames in a capture before its period, jitter or counters are judged.
MIN_FRAMES_PER_ID = 8

#: Share of consecutive differences that must be +1 (mod 2^k) for a bit field to be a counter.
COUNTER_MIN_SHARE = 0.9

#: (width in bits, shift) of the bit fields tested for rolling counters: every field of 2 to 8
#: bits inside one byte. Real counters are 2, 4 or 8 bits wide but not always nibble-aligned
#: (set_01 has 5-bit counters at bit 3, Kia 7-bit ones at bit 1).
_COUNTER_FIELDS: tuple[tuple[int, int], ...] = tuple((k, s) for k in range(2, 9) for s in range(0, 9 - k))


#: Ranges measured on public real captures (HCRL, can-train-and-test); a credible
#: synthetic vehicle must fall inside every one. Window ranges apply to the median window.
REAL_RANGES: dict[str, tuple[float, float]] = {
    "n_ids": (27, 98),
    "frames_per_s": (1400.0, 2600.0),
    "dlc8_share": (0.53, 0.94),
    "constant_byte_share": (0.60, 0.91),
    "counter_id_share": (0.22, 0.58),
    "nodes_per_window": (24, 54),
    "edges_per_window": (36, 86),
}


def within_real_ranges(stats: dict) -> dict[str, bool]:
    """``{stat: lo <= value <= hi}`` for every ``REAL_RANGES`` entry (window stats: median)."""
    out = {}
    for key, (lo, hi) in REAL_RANGES.items():
        value = stats.get(key)
        if isinstance(value, dict):
            value = value.get("median")
        out[key] = value is not None and lo <= value <= hi
    return out


def traffic_stats(captures: list[Capture], window: int = 100) -> dict:
    """Statistics of a list of captures (typically the attack-free ones of one dataset).

    Returns a JSON-serialisable dict:
        n_captures, n_frames, n_ids (distinct over all captures), n_ids_per_capture (median),
        frames_per_s (median over captures), period_hist ({"10": share, ..., "other": share}
        over (capture, ID) pairs with enough frames), median_rel_jitter (robust std of
        inter-arrival / median inter-arrival, median over those pairs), dlc8_share (of frames),
        constant_byte_share (of (capture, ID, byte) pairs present in the capture),
        counter_id_share (of (capture, ID) pairs), attack_frame_share, and
        nodes_per_window / edges_per_window as {"median", "p5", "p95", "n_windows"}.
    """
    caps = [c for c in captures if len(c) > 0]
    n_frames = int(sum(len(c) for c in caps))
    per_id = [_per_id_stats(c) for c in caps]
    periods = np.concatenate([p["period_s"] for p in per_id]) if per_id else np.zeros(0)
    jitter = np.concatenate([p["rel_jitter"] for p in per_id]) if per_id else np.zeros(0)
    counters = np.concatenate([p["has_counter"] for p in per_id]) if per_id else np.zeros(0, bool)
    const_num = sum(p["const_bytes"] for p in per_id)
    const_den = sum(p["present_bytes"] for p in per_id)
    nodes, edges = _window_counts(caps, window)
    return {
        "n_captures": len(caps),
        "n_frames": n_frames,
        "n_ids": int(np.unique(np.concatenate([c.can_id for c in caps])).size) if caps else 0,
        "n_ids_per_capture": _median([np.unique(c.can_id).size for c in caps]),
        "frames_per_s": _median([len(c) / c.duration_s for c in caps if c.duration_s > 0]),
        "period_hist": period_histogram(periods),
        "median_rel_jitter": _median(jitter),
        "dlc8_share": _share(sum(int((c.dlc == 8).sum()) for c in caps), n_frames),
        "constant_byte_share": _share(const_num, const_den),
        "counter_id_share": _share(int(counters.sum()), counters.size),
        "attack_frame_share": _share(sum(c.n_attack for c in caps), n_frames),
        "window": window,
        "nodes_per_window": _spread(nodes),
        "edges_per_window": _spread(edges),
    }


def period_histogram(periods_s: np.ndarray) -> dict[str, float]:
    """Share of IDs whose median inter-arrival is nearest each standard period (or "other").

    Nearest is judged in log space (periods span two decades); an ID further than
    ``PERIOD_TOLERANCE`` from every standard period is "other" (event-driven or odd timers).
    """
    keys = [_period_key(p) for p in STANDARD_PERIODS_MS] + ["other"]
    if periods_s.size == 0:
        return {k: 0.0 for k in keys}
    std = np.asarray(STANDARD_PERIODS_MS) / 1000.0
    dist = np.abs(np.log(periods_s[:, None]) - np.log(std[None, :]))
    nearest = dist.argmin(axis=1)
    ok = dist[np.arange(periods_s.size), nearest] <= np.log1p(PERIOD_TOLERANCE)
    counts = np.bincount(np.where(ok, nearest, len(std)), minlength=len(std) + 1)
    return {k: round(float(v) / periods_s.size, 4) for k, v in zip(keys, counts)}


def _period_key(ms: float) -> str:
    return f"{ms:g}"


def _per_id_stats(cap: Capture) -> dict:
    """Per-ID timing, constant-byte and counter statistics of one capture.

    Frames are stably sorted by ID so that each ID's frames form one contiguous, time-ordered
    run; all reductions are then ``reduceat`` over the run starts.
    """
    order = np.argsort(cap.can_id, kind="stable")
    ids = cap.can_id[order]
    ts = cap.timestamp[order]
    dlc = cap.dlc[order].astype(np.int64)
    pay = cap.payload[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, ids.size])
    same_next = np.r_[ids[1:] == ids[:-1], False]  # frame i and i+1 belong to the same ID

    period, jitter = _timing(ts, starts, counts, same_next)
    present = np.arange(8)[None, :] < dlc[:, None]
    lo = np.minimum.reduceat(np.where(present, pay, 255), starts, axis=0)
    hi = np.maximum.reduceat(np.where(present, pay, 0), starts, axis=0)
    seen = np.add.reduceat(present.astype(np.int64), starts, axis=0) > 0
    has_counter = _counters(pay, present, starts, counts, same_next)
    enough = counts >= MIN_FRAMES_PER_ID
    return {
        "period_s": period[enough],
        "rel_jitter": jitter[enough],
        "const_bytes": int((seen & (lo == hi)).sum()),
        "present_bytes": int(seen.sum()),
        "has_counter": has_counter[enough],
    }


def _timing(ts: np.ndarray, starts: np.ndarray, counts: np.ndarray, same_next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median inter-arrival and robust relative jitter (1.4826 * MAD / median) per ID run."""
    n_ids = starts.size
    dt = np.diff(ts)
    valid = same_next[:-1]
    run = np.repeat(np.arange(n_ids), counts)[:-1][valid]
    dt = dt[valid]
    period = np.full(n_ids, np.nan)
    jitter = np.full(n_ids, np.nan)
    if dt.size == 0:
        return period, jitter
    med = _grouped_median(dt, run, n_ids)
    mad = _grouped_median(np.abs(dt - med[run]), run, n_ids)
    with np.errstate(invalid="ignore", divide="ignore"):
        period = med
        jitter = 1.4826 * mad / med
    return period, jitter


def _grouped_median(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of ``values`` per group id (lower median), NaN for empty groups."""
    order = np.lexsort((values, group))
    v, g = values[order], group[order]
    counts = np.bincount(g, minlength=n_groups)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    out = np.full(n_groups, np.nan)
    has = counts > 0
    out[has] = v[first[has] + (counts[has] - 1) // 2]
    return out


def _counters(pay: np.ndarray, present: np.ndarray, starts: np.ndarray, counts: np.ndarray, same_next: np.ndarray) -> np.ndarray:
    """True per ID run if some 2/4/8-bit field of some byte increments by 1 mod 2^k per frame.

    Row i compares frame i with frame i+1 of the same ID (the last row of each run compares
    nothing), so sums over a run are ``reduceat`` over the run starts.
    """
    nxt = np.concatenate([pay[1:], pay[-1:]]).astype(np.int64)
    cur = pay.astype(np.int64)
    both = same_next[:, None] & present & np.concatenate([present[1:], present[-1:]])
    n_pairs = np.add.reduceat(both.astype(np.int64), starts, axis=0)
    found = np.zeros(starts.size, bool)
    for width, shift in _COUNTER_FIELDS:
        mask = (1 << width) - 1
        step = ((((nxt >> shift) & mask) - ((cur >> shift) & mask)) & mask) == 1
        hits = np.add.reduceat((step & both).astype(np.int64), starts, axis=0)
        ok = (n_pairs >= MIN_FRAMES_PER_ID - 1) & (hits >= COUNTER_MIN_SHARE * n_pairs)
        found |= ok.any(axis=1)
    return found


def _window_counts(caps: Iterable[Capture], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct IDs (nodes) and distinct consecutive ID pairs (edges) per non-overlapping window."""
    nodes, edges = [], []
    for cap in caps:
        n_win = len(cap) // window
        if n_win == 0:
            continue
        ids = cap.can_id[: n_win * window].astype(np.int64).reshape(n_win, window)
        nodes.append(_distinct_per_row(ids))
        pairs = (ids[:, :-1] << 32) | ids[:, 1:]
        edges.append(_distinct_per_row(pairs))
    if not nodes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(nodes), np.concatenate(edges)


def _distinct_per_row(a: np.ndarray) -> np.ndarray:
    s = np.sort(a, axis=1)
    return 1 + (s[:, 1:] != s[:, :-1]).sum(axis=1)


def _spread(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"median": None, "p5": None, "p95": None, "n_windows": 0}
    p5, med, p95 = np.percentile(x, [5, 50, 95])
    return {"median": float(med), "p5": float(p5), "p95": float(p95), "n_windows": int(x.size)}


def _median(x) -> float | None:
    arr = np.asarray(x, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(np.median(arr)) if arr.size else None


def _share(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None
