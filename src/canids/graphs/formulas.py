"""The feature formulas, shared by ``build_graphs`` and the streaming builder.

``graphs.build`` computes the features of every window of a recorded capture at once;
``graphs.stream_window`` computes one live window's from per-ID state. Both call these
functions, so each feature is defined once and the two paths give the same bits. A live
window runs them on arrays of ~100 elements, where a NumPy call costs about a microsecond
whatever its size: hence few calls, preallocated outputs instead of ``np.stack``, and no
``np.mean`` / ``np.clip`` (their Python wrappers cost more than the arithmetic). A
transcendental function always sees a contiguous array (SIMD and scalar ``log`` may differ
in the last bit), and every sum adds the same numbers in the same order in both paths.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from canids.graphs.features import EDGE_FEATURES, GRAPH_FEATURES, NODE_FEATURES

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

#: The per-frame columns whose per-node reductions ``node_features`` takes, in this order.
NODE_FRAME_COLUMNS = ("log_ia", "jitter", "changed", "byte_change", "entropy", "new_id", "stalled")
#: A transition is regular when its inter-arrival is within e^0.2 (22 %) of the previous
#: one; an ID is periodic once it has ``_PERIODIC_MIN_FRAMES`` frames and at least 4 in 5 of
#: its transitions that had a predecessor were regular. Its period is the mean of its regular
#: inter-arrivals, kept as an integer sum of microseconds: exact in any order, so a capture
#: and a live window agree to the bit, and untouched by the gap a silenced sender leaves
#: (the transitions around a gap are not regular). Event-driven IDs and the IDs a fuzzer
#: makes up are not periodic; real periodic ones are.
_REGULAR_JITTER, _PERIODIC_MIN_FRAMES = 0.2, 10
#: A frame arriving within 65 % of its ID's warm-up period (100 * ia < 65 * period) breaks its rate.
_RATE_VIOLATION_PERCENT = 65
#: A periodic ID with a period of at least ``_FAST_IA_S`` (not a flood) and no frame for
#: ``_OVERDUE_PERIODS`` periods is overdue, until it has been silent for ``_STALE_ID_S``
#: (then it is gone: a diagnostic session that ended, not a silenced sender); a window
#: reports up to ``_OVERDUE_CLIP`` of them.
_OVERDUE_PERIODS, _OVERDUE_CLIP = 4, 4.0

#: An ID's first transitions in a capture are its warm-up, which says what the ID normally
#: does: its period is the mean of the regular ones among its first ``_PERIOD_WARMUP``, its
#: rolling bits are those that changed on each of its first ``_ROLLING_WARMUP`` (a rolling
#: counter's lowest bit). Learnt once and then fixed, so an impostor that keeps sending cannot
#: teach the ID its own behaviour: a running mean of the period drifted towards an untimed
#: masquerader's faster one until its frames stopped breaking the rate (a quarter of them were
#: caught), and a running share of changed payloads would learn a frozen counter alike. 32
#: transitions, not 12: a signal ramping by one step per frame looks like a counter for a
#: dozen frames and then stops (up to 3 % of the frames of validation blocks, which start mid-
#: capture, were flagged); a random bit survives 32 transitions once in 4 x 10^9.
_PERIOD_WARMUP, _ROLLING_WARMUP = 16, 32
_ALL_BITS = np.uint64(0xFFFF_FFFF_FFFF_FFFF)

#: The per-frame columns whose window means ``graph_features`` takes, in this order.
GRAPH_FRAME_COLUMNS = ("fast", "jitter", "new_id", "rate_violation", "stalled")

_LOG_IA_SCALE = _LOG_IA_MAX - _LOG_IA_MIN
#: Where the means, the extremes and the byte spread go among ``x``'s columns (NODE_FEATURES).
_X_MEAN_COLUMNS, _X_EXTREME_COLUMNS, _X_BYTE_STD_COLUMN = np.array([0, 3, 5, 6, 7, 9, 10]), np.array([1, 2, 4]), 8
_X_WIDTH = len(NODE_FEATURES)
assert _X_EXTREME_COLUMNS.tolist() == [1, 2, 4], "node_features copies the extremes into rows 1-2 and 4"
#: A node's NODE_FRAME_COLUMNS means become features as (mean - offset) / scale (float64; an
#: offset 0 / scale 1 leaves a mean's bits as they are), one row per column of ``x`` (0 / 1
#: where x holds no mean) ...
_MEAN_OFFSET, _MEAN_SCALE = np.zeros((_X_WIDTH, 1)), np.ones((_X_WIDTH, 1))
_MEAN_OFFSET[_X_MEAN_COLUMNS, 0] = [_NEUTRAL_LOG_IA, 0, 0, 0, 0, 0, 0]
_MEAN_SCALE[_X_MEAN_COLUMNS, 0] = [_LOG_IA_SCALE, _JITTER_CLIP, 1, 1, 3, 1, 1]
#: ... and its log_ia min, log_ia max and jitter max likewise, in float32 (their dtype).
_EXTREME_OFFSET = np.array([_NEUTRAL_LOG_IA, _NEUTRAL_LOG_IA, 0], np.float32)[:, None]
_EXTREME_SCALE = np.array([_LOG_IA_SCALE, _LOG_IA_SCALE, _JITTER_CLIP], np.float32)[:, None]
#: ``_node_sums``'s rows: x's columns (a frame column's sums where its mean goes, 0 in the
#: others), then each byte's sums, then each byte's sums of squares.
_SUM_ROWS = np.r_[_X_MEAN_COLUMNS, np.arange(_X_WIDTH, _X_WIDTH + 16)]
_BYTE_SUMS, _BYTE_SQUARE_SUMS = slice(_X_WIDTH, _X_WIDTH + 8), slice(_X_WIDTH + 8, _X_WIDTH + 16)
#: Scales of the window means of GRAPH_FRAME_COLUMNS, and where they go among ``u``'s columns.
_U_SCALE = np.array([1.0, _JITTER_CLIP, 1.0, 1.0, 1.0], np.float32)
_U_MEAN_COLUMNS = np.array([1, 2, 3, 4, 6])
#: Up to this many frames, ``_node_sums`` sums everything with one bincount (a live window).
_ONE_BINCOUNT_MAX_FRAMES = 4096
#: Longest segment whose byte sums fit a 16-bit lane (257 * 255 < 2**16).
_MAX_PACKED_SEGMENT = 257
#: Per DLC (0-255), the top bit of each used byte of a payload word: the first max(DLC, 1)
#: bytes, at most 8.
_USED_BYTES_TOP_BITS = np.array([0x8080808080808080 & ((1 << (8 * min(max(dlc, 1), 8))) - 1) for dlc in range(256)], np.uint64)
_LOW_7_BITS = np.uint64(0x7F7F7F7F7F7F7F7F)


def _operand(value: float, dtype: type = np.float64) -> np.ndarray:
    """``value`` as a 0-d array of ``dtype``, the dtype of the array it meets. A ufunc converts
    a Python scalar operand on every call (~0.1 us, a third of a ufunc on a live window's
    ~100 elements); a 0-d array of the other operand's dtype gives the same result without."""
    return np.array(value, dtype)


# The constants above as ufunc operands (``_operand``): float64 for times and the float64
# features, int64 for frame and transition counts and microseconds.
_F_MIN_IA, _F_WARMUP, _F_STALE_ID, _F_FAST_IA = (_operand(v) for v in (_MIN_IA_S, _WARMUP_S, _STALE_ID_S, _FAST_IA_S))
_F_LOG_IA_MIN, _F_LOG_IA_MAX, _F_NEUTRAL_LOG_IA, _F_JITTER_CLIP = (_operand(v) for v in (_LOG_IA_MIN, _LOG_IA_MAX, _NEUTRAL_LOG_IA, _JITTER_CLIP))
_F_REGULAR_JITTER, _F_ZERO, _F_ONE, _F_MICROS_PER_S, _F_MS_PER_S = (_operand(v) for v in (_REGULAR_JITTER, 0.0, 1.0, 1e6, 1e3))
_F_OVERDUE_CLIP = _operand(_OVERDUE_CLIP)
_I_PERIOD_WARMUP, _I_ROLLING_WARMUP, _I_ZERO, _I_ONE = (_operand(v, np.int64) for v in (_PERIOD_WARMUP, _ROLLING_WARMUP, 0, 1))
_I_FIVE, _I_PERIODIC_REGULAR, _I_PERCENT, _I_RATE_PERCENT = (_operand(v, np.int64) for v in (5, 4 * (_PERIOD_WARMUP - 1), 100, _RATE_VIOLATION_PERCENT))
#: A DLC's least (1): uint8 like a capture's DLCs, so that a maximum keeps any DLC array's dtype.
_U8_ONE = _operand(1, np.uint8)
_U64_ZERO, _U64_ALL_BITS = _operand(0, np.uint64), _operand(_ALL_BITS, np.uint64)


def _everywhere(mask: np.ndarray) -> bool:
    """``mask.all()``, in a sixth of its time on a live window (``argmin`` finds a False in
    0.1 us, ``all`` goes through the reduction machinery): a formula skips an ``np.where``
    whose other branch no frame takes (past a capture's first frames, most windows)."""
    return not len(mask) or bool(mask[mask.argmin()])


def _anywhere(mask: np.ndarray) -> bool:
    """``mask.any()``, as fast as ``_everywhere``."""
    return bool(len(mask)) and bool(mask[mask.argmax()])


def inter_arrival(dt: np.ndarray) -> np.ndarray:
    """Seconds since the previous frame of the same ID, floored (see ``_MIN_IA_S``)."""
    return np.maximum(dt, _F_MIN_IA)


def timing_features(ia: np.ndarray, prev_ia: np.ndarray, has_prev: np.ndarray, has_prev2: np.ndarray, t_rel: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(log_ia, jitter, fast, new_id)`` per frame from its inter-arrival ``ia``, the same
    ID's previous inter-arrival ``prev_ia``, whether the ID had one / two earlier frames, and
    the time since the capture started ``t_rel``. Values of ``ia`` where ``has_prev`` is
    False (``prev_ia`` where ``has_prev2`` is) are never used."""
    log_ia = np.log10(ia)
    np.maximum(log_ia, _F_LOG_IA_MIN, out=log_ia)
    np.minimum(log_ia, _F_LOG_IA_MAX, out=log_ia)
    new_id, fast = ia > _F_STALE_ID, ia < _F_FAST_IA
    if not _everywhere(has_prev):
        # First sighting of an ID: "new" unless the capture is still warming up (every ID
        # is new in a capture's first second, and that is not an attack).
        warm = t_rel < _F_WARMUP
        log_ia = np.where(has_prev, log_ia, np.where(warm, _F_NEUTRAL_LOG_IA, _F_LOG_IA_MAX))
        new_id = np.where(has_prev, new_id, ~warm)
        fast &= has_prev
    ratio = ia / prev_ia
    jitter = np.log(ratio, out=ratio)
    np.abs(jitter, out=jitter)
    if not _everywhere(has_prev2):
        jitter = np.where(has_prev2, jitter, _F_ZERO)
    np.minimum(jitter, _F_JITTER_CLIP, out=jitter)
    return log_ia, jitter, fast, new_id


_WORD = np.dtype("<u8")  # (a dtype object: ``view`` parses a string on every call)


def payload_words(payload: np.ndarray) -> np.ndarray:
    """Each frame's 8 payload bytes as one uint64, byte ``j`` in bits ``8j .. 8j+7`` on any
    machine: comparing two frames' payloads is then one XOR, not eight byte compares."""
    return np.ascontiguousarray(payload, np.uint8).view(_WORD).ravel()


def payload_change(diff_words: np.ndarray, dlc_changed: np.ndarray, dlc: np.ndarray, has_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(changed, byte_change)`` per frame from the XOR of its payload word with the same
    ID's previous one (``diff_words``) and whether its DLC changed: any difference, and the
    share of its used bytes that differ (1 on a DLC change)."""
    n_changed = _used_nonzero_bytes(diff_words, dlc)
    byte_change = n_changed / np.maximum(dlc, _U8_ONE)  # uint8 / uint8: float64
    changed = diff_words.astype(bool)
    if _anywhere(dlc_changed):
        byte_change = np.where(dlc_changed, _F_ONE, byte_change)
        changed |= dlc_changed
    if not _everywhere(has_prev):
        byte_change = np.where(has_prev, byte_change, _F_ZERO)
        changed &= has_prev
    return changed, byte_change


def _used_nonzero_bytes(words: np.ndarray, dlc: np.ndarray) -> np.ndarray:
    """How many of each word's used bytes (``_USED_BYTES_TOP_BITS``) are non-zero.

    A byte is non-zero exactly when its top bit is set, or adding 0x7F to its low 7 bits
    sets it (the sum stays below 0x100: no carry into the next byte); one bit per byte is
    then counted. Five whole-array operations, where folding each byte onto its low bit
    took eight: 1.5x faster on a capture, 2x on a live window.
    """
    top = words & _LOW_7_BITS
    top += _LOW_7_BITS
    top |= words
    top &= _USED_BYTES_TOP_BITS[dlc]
    return np.bitwise_count(top)


def regular(jitter: np.ndarray, has_prev2: np.ndarray) -> np.ndarray:
    """Whether a frame's transition is regular (``timing_features``'s jitter, float64)."""
    return has_prev2 & (jitter < _F_REGULAR_JITTER)


def micros(ia: np.ndarray) -> np.ndarray:
    """Inter-arrivals (s, floored by ``inter_arrival``) as whole microseconds, int64."""
    us = ia * _F_MICROS_PER_S
    return np.rint(us, out=us).astype(np.int64)


def periodic(frames: np.ndarray, regular_count: np.ndarray) -> np.ndarray:
    """Whether an ID with ``frames`` frames, ``regular_count`` of them regular, is periodic."""
    return (frames >= _PERIODIC_MIN_FRAMES) & (5 * regular_count >= 4 * (frames - 2))


def warmup_parts(n_before: np.ndarray, diff_words: np.ndarray, is_regular: np.ndarray, regular_us: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each frame's share in its ID's warm-up state, given the frames of its ID before it
    (``n_before``), its payload word XOR the previous one's, whether its transition is
    ``regular`` (int64) and its microseconds where regular (else 0): ``(diff word, or all
    bits where the transition is not among the first _ROLLING_WARMUP, regular, regular
    microseconds (both 0 past the first _PERIOD_WARMUP transitions))``. An ID's rolling bits
    are the AND of the first, its warm-up period the sums of the others."""
    in_rolling = n_before >= _I_ONE
    in_rolling &= n_before <= _I_ROLLING_WARMUP
    rolling = np.where(in_rolling, diff_words, _U64_ALL_BITS)
    in_period = n_before <= _I_PERIOD_WARMUP  # (no transition before the second frame is regular)
    return rolling, is_regular * in_period, regular_us * in_period


def rate_violation(ia_us: np.ndarray, n_before: np.ndarray, warm_regular: np.ndarray, warm_regular_us: np.ndarray) -> np.ndarray:
    """Whether a frame comes sooner than ``_RATE_VIOLATION_PERCENT`` of its ID's warm-up
    period: the ID had ``n_before`` frames before it, past its warm-up, and at least 4 in 5
    of its warm-up transitions were regular (``warm_regular`` of them, lasting
    ``warm_regular_us`` microseconds).

    An impostor that takes over an ID at its own steady, faster rate (untimed masquerade),
    a second sender of the ID (spoofing, a faulty ECU) and a flood of it all break the rate
    the ID kept while the capture began, on any vehicle, whatever its periods. Zero on a
    healthy bus. Integers only.
    """
    periodic_start = n_before > _I_PERIOD_WARMUP
    periodic_start &= _I_FIVE * warm_regular >= _I_PERIODIC_REGULAR
    fast = _I_PERCENT * ia_us
    fast *= warm_regular
    periodic_start &= fast < _I_RATE_PERCENT * warm_regular_us
    return periodic_start


def stalled(diff_words: np.ndarray, dlc_changed: np.ndarray, n_before: np.ndarray, rolling_bits: np.ndarray) -> np.ndarray:
    """Whether a frame past its ID's warm-up (``n_before`` frames before it) leaves every
    one of the ID's ``rolling_bits`` unchanged (``diff_words``: its payload XOR the previous
    one's; a DLC change says nothing).

    A rolling counter's lowest bit changes on every frame of its ID on any vehicle; a
    masquerader that replays a payload or freezes the counter stops it. Only all rolling
    bits at once count: a sum checksum that mirrors the counter while the signals rest also
    changes on every warm-up transition, and misses single frames when they move.
    """
    return (n_before > _I_ROLLING_WARMUP) & ~dlc_changed & (rolling_bits != _U64_ZERO) & ((rolling_bits & diff_words) == _U64_ZERO)


def overdue(frames: np.ndarray, regular_count: np.ndarray, regular_us: np.ndarray, last_ts: np.ndarray, t_end: np.ndarray | float) -> np.ndarray:
    """Whether each periodic ID (``frames`` frames, the last at ``last_ts``, ``regular_count``
    regular transitions lasting ``regular_us`` microseconds) of period at least
    ``_FAST_IA_S`` has sent nothing for ``_OVERDUE_PERIODS`` periods at ``t_end``, nor for
    ``_STALE_ID_S``. A silenced sender (suppression) leaves no frame to describe; the gap it
    leaves is what any bus shows."""
    return late(frames, regular_count, regular_us, last_ts, t_end) & recent(last_ts, t_end)


def late(frames: np.ndarray, regular_count: np.ndarray, regular_us: np.ndarray, last_ts: np.ndarray, t_end: np.ndarray | float) -> np.ndarray:
    """``overdue`` without the staleness limit: for a later ``t_end`` it can only become True.
    (``stream_state.IdHistory.n_overdue`` skips it on a bound that relies on this form.)"""
    silent = t_end - last_ts
    return can_be_late(frames, regular_count, regular_us) & (silent * 1e6 * regular_count > _OVERDUE_PERIODS * regular_us)


def can_be_late(frames: np.ndarray, regular_count: np.ndarray, regular_us: np.ndarray) -> np.ndarray:
    """Whether an ID's history lets it be ``late`` at all, whenever: periodic, with a period
    of at least ``_FAST_IA_S`` (not a flood). Until the ID's next frame, it stays so."""
    return periodic(frames, regular_count) & (regular_us >= int(_FAST_IA_S * 1e6) * regular_count)


def recent(last_ts: np.ndarray, t_end: np.ndarray | float) -> np.ndarray:
    """Whether an ID's last frame, at ``last_ts``, is at most ``_STALE_ID_S`` before ``t_end``
    (for a later ``t_end`` it can only become False)."""
    return t_end - last_ts <= _STALE_ID_S


def gap_ms(dt: np.ndarray) -> np.ndarray:
    """Time from a frame to the next (any ID) in ms, the edges' timing; float32."""
    dt = np.maximum(dt, _F_ZERO)
    dt *= _F_MS_PER_S
    return dt.astype(np.float32)


def node_features(frame_columns: np.ndarray, payload: np.ndarray, node_of: np.ndarray, starts: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Node features ``x`` [nodes, 11] float32 from the frames grouped by node:
    ``frame_columns`` [``NODE_FRAME_COLUMNS``, frames] float32 and payloads [frames, 8]
    uint8, each frame's node ``node_of`` (non-decreasing), a node's frames contiguous from
    ``starts[i]``, ``count[i]`` of them (int64).

    A node's means are float64 sums over its frames in frame order, divided by the count
    (one rounding per feature, where float32 sums drifted by up to 1e-4); its byte spread
    comes from exact integer sums of the bytes and their squares, scaled by 1/255 last.
    """
    # One row per x column (a frame column's means where x has them), then the byte means
    # and the byte square means.
    means = _node_sums(frame_columns, payload, node_of, starts)
    means /= count
    byte_mean, byte_sq_mean = means[_BYTE_SUMS], means[_BYTE_SQUARE_SUMS]
    byte_var = np.multiply(byte_mean, byte_mean)
    np.subtract(byte_sq_mean, byte_var, out=byte_var)
    byte_std = np.sqrt(np.maximum(byte_var, 0.0, out=byte_var), out=byte_var)
    # The spread of each byte across the node's frames, averaged over its 8 bytes, laid out
    # [nodes, 8] (contiguous) as the sum over a node's bytes has always been taken.
    payload_std = _mean_last_axis(np.ascontiguousarray(byte_std.T))
    payload_std /= 255.0
    extremes = np.empty((3, len(starts)), np.float32)
    np.minimum.reduceat(frame_columns[0], starts, out=extremes[0])  # log_ia min
    np.maximum.reduceat(frame_columns[:2], starts, axis=1, out=extremes[1:])  # log_ia max, jitter max
    extremes -= _EXTREME_OFFSET
    extremes /= _EXTREME_SCALE
    # No feature counts nodes or frames per ID, and none describes payload content (DLC,
    # byte values): those differ between vehicles (a Spark window holds twice the IDs of a
    # Sonata window) and made every window of an unseen vehicle look anomalous.
    # x's columns as rows, in float64 (the float32 extremes exactly), each value cast to
    # float32 once, as np.stack(..., dtype=float32) casts it; whole-row copies, where
    # scattering into x's columns took three fancy-index assignments.
    columns = means[:_X_WIDTH]
    columns -= _MEAN_OFFSET
    columns /= _MEAN_SCALE
    columns[1:3] = extremes[:2]  # (_X_EXTREME_COLUMNS)
    columns[4] = extremes[2]
    columns[_X_BYTE_STD_COLUMN] = payload_std
    return np.ascontiguousarray(columns.T, np.float32)


def _node_sums(frame_columns: np.ndarray, payload: np.ndarray, node_of: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per node (columns), float64 sums of each frame column, each byte and each byte's
    square (rows: ``_SUM_ROWS``; the others 0). A frame column's sums are sequential in frame
    order (``np.bincount``'s), and byte sums are exact integers, whichever way they are
    computed: a live window's frames go through one bincount of all quantities (one NumPy
    call), a capture's through a bincount per frame column and ``_segment_byte_sums`` (no
    float64 copy of every byte)."""
    n_nodes, n_rows = len(starts), _X_WIDTH + 16
    if len(node_of) <= _ONE_BINCOUNT_MAX_FRAMES:
        values = np.empty((len(_SUM_ROWS), len(node_of)))
        values[:-16] = frame_columns
        values[-16:-8] = payload.T
        np.square(values[-16:-8], out=values[-8:])
        bins = _SUM_ROW_OFFSETS * n_nodes + node_of
        return np.bincount(bins.ravel(), values.ravel(), n_rows * n_nodes).reshape(n_rows, n_nodes)
    sums = np.zeros((n_rows, n_nodes))
    for row, column in zip(_X_MEAN_COLUMNS, frame_columns):
        sums[row] = np.bincount(node_of, weights=column, minlength=n_nodes)
    _segment_byte_sums(payload, starts, out=sums[_X_WIDTH:].T)
    return sums


#: Quantity k of frame i goes to bincount bin _SUM_ROWS[k] * nodes + node_of[i] (``_node_sums``).
_SUM_ROW_OFFSETS = _SUM_ROWS[:, None]


def _segment_byte_sums(payload: np.ndarray, starts: np.ndarray, out: np.ndarray) -> None:
    """Exact sums of each byte column (into ``out[:, :8]``) and of its squares (``out[:, 8:]``)
    over the row segments of ``payload`` beginning at ``starts``; ``out`` [segments, 16] may
    be any view (a transposed one: the cast to its dtype and the transposition are one pass).

    Bytes are summed as integers in packed lanes: four 16-bit lanes per uint64 for the
    bytes, two 32-bit lanes for their squares, one ``reduceat`` of the words each. A segment
    of at most 257 rows (a node holds at most a window's frames) cannot overflow a lane
    (257 * 255 < 2**16, 257 * 255**2 < 2**32), so no lane carries into the next and the sums
    are exact: ~2x faster than summing 8 float columns per segment, and 1.5x faster than
    the differences of running sums this took before. Longer segments take NumPy's
    per-segment integer sums (same values).
    """
    n = len(payload)
    if n == 0 or np.max(np.diff(np.r_[starts, n])) > _MAX_PACKED_SEGMENT:
        wide = payload.astype(np.int64)
        out[:, :8] = np.add.reduceat(wide, starts, axis=0)
        out[:, 8:] = np.add.reduceat(wide * wide, starts, axis=0)
        return
    for lanes, part in ((payload.astype("<u2"), out[:, :8]), (np.square(payload.astype("<u4")), out[:, 8:])):
        part[:] = np.add.reduceat(lanes.view("<u8"), starts, axis=0).view(lanes.dtype)


def edge_features(e_src: np.ndarray, e_dst: np.ndarray, e_count: np.ndarray, dt_sum: np.ndarray, dt_sq_sum: np.ndarray) -> np.ndarray:
    """Edge features from each edge's transition count and the sum and sum of squares of
    its transitions' ``gap_ms`` (float64, summed in frame order)."""
    stats = np.empty((3, len(e_count)))  # count, dt mean, dt std: each log1p'd
    e_cnt = stats[0]
    e_cnt[:] = e_count
    dt_mean = np.divide(dt_sum, e_cnt, out=stats[1])
    dt_var = dt_sq_sum / e_cnt
    dt_var -= np.square(dt_mean)  # (what dt_mean**2 computes)
    np.sqrt(np.maximum(dt_var, _F_ZERO, out=dt_var), out=stats[2])
    edge_attr = np.empty((len(e_count), len(EDGE_FEATURES)), np.float32)
    edge_attr[:, :3] = np.log1p(stats, out=stats).T
    edge_attr[:, 3] = e_src == e_dst
    return edge_attr


def graph_features(max_share: np.ndarray, per_frame: np.ndarray, n_overdue: np.ndarray) -> np.ndarray:
    """Window features ``u`` [windows, 7] from the largest node's share of the frames, the
    window's ``GRAPH_FRAME_COLUMNS`` values per frame [windows, 5, size] float32 in frame
    order, and how many IDs are ``overdue`` at its last frame."""
    # Window features are violations only: bus load, payload entropy or byte activity of a
    # normal window are properties of the vehicle (they moved a Spark's normal windows 100x
    # in VGAE error), while fast repeats, timing jitter and new IDs are zero on any
    # healthy bus, as are rate violations, overdue periodic IDs and stalled rolling bits.
    means = _mean_last_axis(per_frame)
    u = np.empty((len(per_frame), len(GRAPH_FEATURES)), np.float32)
    u[:, 0] = max_share
    u[:, _U_MEAN_COLUMNS] = np.true_divide(means, _U_SCALE)
    overdue_share = np.minimum(n_overdue, _F_OVERDUE_CLIP)
    overdue_share /= _F_OVERDUE_CLIP
    u[:, 5] = overdue_share
    return u


def _mean_last_axis(values: np.ndarray) -> np.ndarray:
    """``values.mean(axis=-1)`` of a float array, bit for bit, without ``np.mean``'s overhead.

    ``np.mean`` divides its sums by an ``intp`` count, so float32 sums go through a float64
    division and a cast back (a buffered, casting loop: 5x the cost of the division on a live
    window). Dividing by the count in the sums' own dtype gives the same bits: for float32 the
    float64 quotient rounded to float32 is the correctly rounded float32 quotient (53 >= 2 x 24
    + 2 bits make double rounding innocuous for a division, Figueroa 1995), and for float64
    the count converts exactly either way.
    """
    means = np.add.reduce(values, -1)
    return np.divide(means, _count(means.dtype, values.shape[-1]), means)


@cache
def _count(dtype: np.dtype, n: int) -> np.ndarray:
    """``n`` as a 0-d array of ``dtype`` (a ufunc operand, ``_operand``), made once per pair."""
    return _operand(n, dtype)
