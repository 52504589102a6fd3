"""Vehicles of the synthetic dataset: their message catalogues, drawn at random and kept credible.

Why it exists: everything a vehicle *is* (which IDs it sends, at which periods, grouped into
which ECUs, with which payload layout: constant bytes, signals, counters, checksums) is decided
once per vehicle, before any traffic is generated. This module draws a fleet from the seed and
rejects any vehicle whose spec falls outside the statistics measured on real captures, so every
seed gives credible vehicles. It also holds the per-(seed, name) random streams that make the
whole generator deterministic.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Real ECU transmission periods (seconds), and how often each is drawn before rate fitting.
PERIODS_S: tuple[float, ...] = (0.010, 0.0125, 0.020, 0.025, 0.050, 0.100, 0.200, 0.500, 1.000)
_PERIOD_WEIGHTS = np.array([0.0, 0.04, 0.12, 0.05, 0.10, 0.32, 0.12, 0.08, 0.17])

#: CAN identifier range that vehicles draw their IDs from (0x000 is left to DoS floods).
ID_LOW, ID_HIGH = 0x0A0, 0x7FF


@dataclass(frozen=True)
class Signal:
    """A physical value (RPM, speed, temperature) packed big-endian into 1 or 2 bytes."""

    byte: int
    width: int  # bytes, 1 or 2
    lo: int
    hi: int
    activity: float  # how far the smooth random walk wanders over a capture (0..~2)
    noise: int  # +-LSB sensor noise


@dataclass(frozen=True)
class Counter:
    """A rolling counter: ``bits`` wide at bit ``shift`` of ``byte``, +1 per frame mod 2^bits."""

    byte: int
    shift: int
    bits: int


@dataclass(frozen=True)
class IdSpec:
    """One periodic message of a vehicle: timing and payload layout."""

    can_id: int
    period: float
    drift: float  # relative clock error of the sending ECU
    jitter: float  # relative std of inter-arrival at periods <= 25 ms (absolute above: see legit_traffic)
    dlc: int
    template: tuple[int, ...]  # 8 bytes; constant bytes come from here
    state_bytes: tuple[int, ...] = ()  # constant within a capture, redrawn per capture (gear, mode)
    signals: tuple[Signal, ...] = ()
    counter: Counter | None = None
    checksum: int | None = None  # byte holding (sum of the other bytes + salt) mod 256
    salt: int = 0
    ecu: int = 0  # messages of one ECU share its clock: same period, phase, drift and jitter
    offset: float = 0.0  # seconds after the ECU's tick (its messages go out back to back)

    @property
    def varying_bytes(self) -> set[int]:
        out = {b for s in self.signals for b in range(s.byte, s.byte + s.width)}
        if self.counter is not None:
            out.add(self.counter.byte)
        if self.checksum is not None:
            out.add(self.checksum)
        return out


@dataclass(frozen=True)
class Vehicle:
    """A vehicle's message catalogue; ``rpm_id`` is the RPM-like message that spoofing forges."""

    name: str
    ids: tuple[IdSpec, ...]
    rpm_id: int

    @property
    def frames_per_s(self) -> float:
        return float(sum(1.0 / s.period for s in self.ids))

    def spec(self, can_id: int) -> IdSpec:
        return next(s for s in self.ids if s.can_id == can_id)


def make_fleet(seed: int, vehicles: int) -> list[Vehicle]:
    """Vehicle A (known) then B, C, ...: each avoids earlier vehicles' IDs except a few shared."""
    fleet: list[Vehicle] = []
    for i in range(vehicles):
        rng = _rng(seed, f"vehicle-{i}")
        taken = sorted({s.can_id for v in fleet for s in v.ids})
        fleet.append(make_vehicle(rng, chr(ord("A") + i), taken))
    return fleet


def make_vehicle(rng: np.random.Generator, name: str, taken_ids: Sequence[int] = (), max_tries: int = 200) -> Vehicle:
    """Draw vehicles until one satisfies the measured real ranges (checked on its spec).

    Rejection keeps every vehicle credible whatever the seed; the draws are all from ``rng``
    so the result stays deterministic.
    """
    for _ in range(max_tries):
        veh = _draw_vehicle(rng, name, taken_ids)
        if _credible(veh):
            return veh
    raise RuntimeError(f"could not draw a credible vehicle {name} in {max_tries} tries")


def vehicle_summary(veh: Vehicle) -> dict:
    """Spec-level facts about a vehicle, recorded in generator.json."""
    n_bytes = sum(s.dlc for s in veh.ids)
    return {
        "n_ids": len(veh.ids),
        "frames_per_s": round(veh.frames_per_s, 1),
        "rpm_id": _hex_id(veh.rpm_id),
        "dlc8_frame_share": round(_dlc8_share(veh), 4),
        "constant_byte_share": round(1 - sum(len(s.varying_bytes) for s in veh.ids) / max(n_bytes, 1), 4),
        "counter_id_share": round(sum(s.counter is not None for s in veh.ids) / len(veh.ids), 4),
        "expected_nodes_per_100": round(expected_nodes(veh), 1),
        "ids": " ".join(_hex_id(s.can_id) for s in veh.ids),
    }


def _draw_vehicle(rng: np.random.Generator, name: str, taken_ids: Sequence[int]) -> Vehicle:
    n = int(rng.integers(30, 101))
    ids = _draw_ids(rng, n, taken_ids)
    periods = _fit_periods(rng, n, target_rate=float(rng.uniform(1550, 2400)))
    # Low identifiers win arbitration, so OEMs give them to the fast messages: sort periods
    # against IDs with some noise rather than exactly.
    key = np.log(periods) + rng.normal(0, 0.9, n)
    periods = periods[np.argsort(key, kind="stable")]
    p8 = float(rng.uniform(0.55, 0.93))
    p_counter = float(rng.uniform(0.28, 0.5))
    specs = [_draw_id_spec(rng, int(cid), float(p), p8, p_counter) for cid, p in zip(ids, periods)]
    rpm_pos = _pick_rpm(rng, specs)
    specs[rpm_pos] = _rpm_spec(specs[rpm_pos])
    return Vehicle(name=name, ids=tuple(_group_ecus(rng, specs)), rpm_id=specs[rpm_pos].can_id)


def _group_ecus(rng: np.random.Generator, specs: list[IdSpec]) -> list[IdSpec]:
    """Cut each period class into ECUs of 1-4 messages sent back to back on one clock.

    This is what makes real ID sequences repetitive (the same transitions every cycle, hence
    36-86 distinct edges per 100-frame window rather than ~99 for independent senders).
    """
    out = list(specs)
    ecu = 0
    for period in sorted({s.period for s in specs}):
        members = [i for i, s in enumerate(specs) if s.period == period]
        members = [members[k] for k in rng.permutation(len(members))]
        while members:
            size = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.3, 0.25, 0.15]))
            group, members = members[:size], members[size:]
            lead = specs[group[0]]
            gaps = np.cumsum(np.r_[0.0, rng.uniform(0.0002, 0.0005, len(group) - 1)])
            for i, off in zip(group, gaps):
                out[i] = dataclasses.replace(specs[i], ecu=ecu, offset=float(off), drift=lead.drift, jitter=lead.jitter)
            ecu += 1
    return out


def _draw_ids(rng: np.random.Generator, n: int, taken_ids: Sequence[int]) -> np.ndarray:
    """``n`` sorted IDs; a few (~5 %) are shared with earlier vehicles, like common OBD/diag IDs."""
    taken = np.asarray(sorted(taken_ids), np.int64)
    n_shared = min(int(rng.binomial(n, 0.05)), n // 10, taken.size // 10)
    shared = rng.choice(taken, size=n_shared, replace=False) if n_shared else np.zeros(0, np.int64)
    pool = np.setdiff1d(np.arange(ID_LOW, ID_HIGH + 1), taken)
    fresh = rng.choice(pool, size=n - n_shared, replace=False)
    return np.sort(np.concatenate([shared, fresh]).astype(np.int64))


def _fit_periods(rng: np.random.Generator, n: int, target_rate: float) -> np.ndarray:
    """Standard periods whose total frame rate is within 5 % of ``target_rate``.

    Real buses are dominated by a block of 10 ms messages (engine, brakes, steering) with
    the bulk of IDs at 100-1000 ms, so periods are drawn without 10 ms first, then IDs are
    promoted to 10 ms (or demoted to slow periods) until the rate fits. Fewer distinct fast
    periods also keeps the interleaving as repetitive as on a real bus.
    """
    ladder = np.asarray(PERIODS_S)
    level = rng.choice(len(ladder), size=n, p=_PERIOD_WEIGHTS / _PERIOD_WEIGHTS.sum())

    def rate() -> float:
        return float((1.0 / ladder[level]).sum())

    slow = np.flatnonzero(ladder >= 0.1)
    while rate() > target_rate * 1.05:
        cand = np.flatnonzero(ladder[level] < 0.1)
        if cand.size == 0:
            break
        level[rng.choice(cand)] = rng.choice(slow)
    while rate() < target_rate * 0.95:
        cand = np.flatnonzero(level > 0)
        if cand.size == 0:
            break
        level[rng.choice(cand)] = 0
    while rate() > target_rate * 1.05:  # a promotion can overshoot by < 100 frames/s
        cand = np.flatnonzero(level < len(ladder) - 1)
        level[rng.choice(cand)] += 1
    return ladder[level]


def _draw_id_spec(rng: np.random.Generator, can_id: int, period: float, p8: float, p_counter: float) -> IdSpec:
    dlc = 8 if rng.random() < p8 else int(rng.choice([1, 2, 3, 4, 5, 6, 7], p=[0.04, 0.14, 0.08, 0.2, 0.18, 0.16, 0.2]))
    template = _draw_template(rng)
    # Slow messages (status, configuration) are mostly static; fast ones carry signals.
    p_static = 0.3 if period <= 0.05 else (0.45 if period <= 0.2 else 0.65)
    static = rng.random() < p_static
    free = list(range(dlc))
    counter = checksum = None
    if rng.random() < p_counter:
        if dlc >= 3 and rng.random() < 0.6:
            checksum = free.pop()  # last byte
        counter = _draw_counter(rng, free)
        free.remove(counter.byte)
    signals = () if static else _draw_signals(rng, free)
    for s in signals:
        for b in range(s.byte, s.byte + s.width):
            free.remove(b)
    state = tuple(b for b in free if rng.random() < 0.05)
    return IdSpec(
        can_id=can_id,
        period=period,
        drift=float(rng.normal(0, 3e-4)),
        jitter=float(rng.uniform(0.008, 0.025)),
        dlc=dlc,
        template=template,
        state_bytes=state,
        signals=signals,
        counter=counter,
        checksum=checksum,
        salt=int(rng.integers(0, 256)),
    )


def _draw_template(rng: np.random.Generator) -> tuple[int, ...]:
    """Constant byte values: real payloads are dominated by 0x00, with some 0xFF and flags."""
    kind = rng.choice(3, size=8, p=[0.5, 0.1, 0.4])
    vals = np.where(kind == 0, 0, np.where(kind == 1, 0xFF, rng.integers(0, 256, 8)))
    return tuple(int(v) for v in vals)


def _draw_counter(rng: np.random.Generator, free: list[int]) -> Counter:
    byte = free[-1] if rng.random() < 0.5 else free[0]
    bits, shift = [(2, 4), (2, 6), (4, 0), (4, 4), (8, 0)][int(rng.choice(5, p=[0.15, 0.15, 0.25, 0.25, 0.2]))]
    return Counter(byte=byte, shift=shift, bits=bits)


def _draw_signals(rng: np.random.Generator, free: list[int]) -> tuple[Signal, ...]:
    """0-3 signals in free bytes: 16-bit (two adjacent bytes) or 8-bit, some barely moving."""
    out: list[Signal] = []
    avail = list(free)
    for _ in range(int(rng.choice(4, p=[0.1, 0.45, 0.3, 0.15]))):
        pairs = [b for b in avail if b + 1 in avail]
        if pairs and rng.random() < 0.5:
            b = int(rng.choice(pairs))
            lo = int(rng.integers(0, 40000))
            span = int(rng.integers(300, 20000))
            out.append(Signal(b, 2, lo, min(lo + span, 0xFFFF), float(rng.uniform(0.2, 1.5)), int(rng.integers(0, 4))))
            avail.remove(b)
            avail.remove(b + 1)
        elif avail:
            b = int(rng.choice(avail))
            lo = int(rng.integers(0, 200))
            span = int(rng.integers(3, 56))
            out.append(Signal(b, 1, lo, min(lo + span, 0xFF), float(rng.uniform(0.2, 1.5)), int(rng.integers(0, 2))))
            avail.remove(b)
    return tuple(sorted(out, key=lambda s: s.byte))


def _pick_rpm(rng: np.random.Generator, specs: list[IdSpec]) -> int:
    fast = [i for i, s in enumerate(specs) if s.period <= 0.0125]
    fast = fast or [int(np.argmin([s.period for s in specs]))]
    return int(rng.choice(fast))


def _rpm_spec(spec: IdSpec) -> IdSpec:
    """The engine-speed message: RPM*4 big-endian in bytes 2-3, a 4-bit counter, a checksum."""
    rpm = Signal(byte=2, width=2, lo=4 * 700, hi=4 * 4500, activity=1.2, noise=3)
    speed = Signal(byte=4, width=1, lo=0, hi=140, activity=0.8, noise=0)
    return dataclasses.replace(
        spec, dlc=8, state_bytes=(), signals=(rpm, speed), counter=Counter(byte=6, shift=0, bits=4), checksum=7
    )


def expected_nodes(veh: Vehicle, window: int = 100) -> float:
    """Expected distinct IDs in a ``window``-frame window: a message of period P shows up in a
    window lasting W seconds with probability min(1, W / P)."""
    span = window / veh.frames_per_s
    return float(sum(min(1.0, span / s.period) for s in veh.ids))


def _dlc8_share(veh: Vehicle) -> float:
    return sum(1.0 / s.period for s in veh.ids if s.dlc == 8) / veh.frames_per_s


def _credible(veh: Vehicle) -> bool:
    """Spec-level check against the real ranges, with margins (measured values scatter)."""
    s = vehicle_summary(veh)
    fast_counters = sum(1 for x in veh.ids if x.counter is not None and x.period <= 0.02)
    fast_signals = sum(1 for x in veh.ids if x.signals and x.period <= 0.02 and x.can_id != veh.rpm_id)
    return (
        30 <= s["n_ids"] <= 100
        and 1500 <= s["frames_per_s"] <= 2500
        and 0.56 <= s["dlc8_frame_share"] <= 0.92
        and 0.64 <= s["constant_byte_share"] <= 0.86
        and 0.25 <= s["counter_id_share"] <= 0.55
        and 26 <= s["expected_nodes_per_100"] <= 46
        and fast_counters >= 3
        and fast_signals >= 2
    )


# --------------------------------------------------------------------------- helpers shared by the generator


def _rng(seed: int, name: str) -> np.random.Generator:
    """An independent stream per (seed, name): stable across Python runs (crc32, not hash())."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def _hex_id(can_id: int) -> str:
    return f"0x{int(can_id):03X}"
