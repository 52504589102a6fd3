"""The embedded ``synthetic`` dataset: credible, deterministic CAN traffic with labelled attacks.

Why it exists: the pipeline must run end to end (CI, a laptop, a 2-core runner) without the
real datasets, which are large and not redistributable. A toy generator would make every
model look perfect, so this one reproduces what real traffic measurably looks like
(statistics of public captures, ``canids.data.traffic_stats.REAL_RANGES``): 30-100 IDs per vehicle at the standard ECU periods with
percent-level jitter, mostly constant payload bytes, rolling counters with checksums, smooth
physical signals, and bus serialisation; attacks are rare episodes that label exactly the
injected frames. ``canids.data.traffic_stats`` measures the result against real captures.

Layout written (can-train-and-test v1.5, like the real datasets)::

    <out_dir>/<split_dir>/<capture>.csv      timestamp,arbitration_id,data_field,attack
    <out_dir>/generator.json                 written last: proves generation finished

Vehicle ``A`` is the known vehicle, ``B`` (and ``C``... when ``vehicles > 2``) the unknown
ones. Every random draw comes from a ``numpy.random.Generator`` seeded by ``(seed, name)``,
so the same arguments give byte-identical files and each capture is independent of the
others' draws.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from canids.data.catalog import STANDARD_SPLITS
from canids.data.frames import Capture
from canids.data.readers import attack_type_from_name

GENERATOR_VERSION = "1.0.0"

#: Captures restart at this epoch (2023-01-01 UTC), as set_01 of can-train-and-test does.
BASE_EPOCH = 1672531200

#: Seconds of traffic per capture at ``scale=1``. Chosen so that the default dataset has
#: ~0.6-0.75 M frames: every stage trains on a 2-core CPU in minutes.
TRAIN_SECONDS = 25.0
TEST_SECONDS = 12.5
#: Floor on a capture's duration, so that tiny scales (tests) still give a few hundred
#: 100-frame windows per split and at least one attack episode per attack capture.
MIN_SECONDS = 8.0

#: Real ECU transmission periods (seconds), and how often each is drawn before rate fitting.
PERIODS_S: tuple[float, ...] = (0.010, 0.0125, 0.020, 0.025, 0.050, 0.100, 0.200, 0.500, 1.000)
_PERIOD_WEIGHTS = np.array([0.0, 0.04, 0.12, 0.05, 0.10, 0.32, 0.12, 0.08, 0.17])

#: CAN identifier range that vehicles draw their IDs from (0x000 is left to DoS floods).
ID_LOW, ID_HIGH = 0x0A0, 0x7FF

#: Classical CAN at 500 kbit/s: a frame occupies the bus for (47 + 8 * DLC) bits plus ~10 %
#: bit stuffing. Frames queue behind each other, which is where real arbitration jitter comes from.
BUS_BITRATE = 500_000.0

DOS_INTERVAL_S = 0.0003
FUZZ_INTERVAL_S = 0.0005

SPLITS: tuple[str, ...] = STANDARD_SPLITS


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


@dataclass
class _Frames:
    """Columnar frames under construction (times in seconds from the capture start)."""

    t: np.ndarray
    can_id: np.ndarray
    dlc: np.ndarray
    payload: np.ndarray
    label: np.ndarray

    @classmethod
    def make(cls, t: np.ndarray, can_id: np.ndarray | int, dlc: np.ndarray | int, payload: np.ndarray, label: int) -> "_Frames":
        n = len(t)
        return cls(
            t=np.asarray(t, np.float64),
            can_id=np.broadcast_to(np.asarray(can_id, np.int32), (n,)).copy(),
            dlc=np.broadcast_to(np.asarray(dlc, np.uint8), (n,)).copy(),
            payload=np.asarray(payload, np.uint8).reshape(n, 8),
            label=np.full(n, label, np.uint8),
        )

    @classmethod
    def concat(cls, parts: Sequence["_Frames"]) -> "_Frames":
        """Concatenate and stably sort by time (ties keep the order of ``parts``)."""
        t = np.concatenate([p.t for p in parts])
        order = np.argsort(t, kind="stable")
        return cls(
            t=t[order],
            can_id=np.concatenate([p.can_id for p in parts])[order],
            dlc=np.concatenate([p.dlc for p in parts])[order],
            payload=np.concatenate([p.payload for p in parts])[order],
            label=np.concatenate([p.label for p in parts])[order],
        )

    def select(self, mask: np.ndarray) -> "_Frames":
        return _Frames(self.t[mask], self.can_id[mask], self.dlc[mask], self.payload[mask], self.label[mask])

    def __len__(self) -> int:
        return len(self.t)


@dataclass(frozen=True)
class _Plan:
    """One capture to generate: where it goes, which vehicle, which attack, how long."""

    split: str
    name: str
    vehicle: str
    attack: str  # normal, DoS, fuzzing, spoofing, masquerade, malfunction, suppress, masquerade_timed
    seconds: float
    variant: int = 0


@dataclass
class SyntheticCapture:
    """A generated capture with its provenance (the ``generator.json`` entry)."""

    relpath: str
    capture: Capture
    info: dict = field(default_factory=dict)
    duplicate_of: str | None = None


# --------------------------------------------------------------------------- public API


def generate(out_dir: str | os.PathLike, *, seed: int = 0, scale: float = 1.0, vehicles: int = 2) -> list[Path]:
    """Write the synthetic dataset under ``out_dir`` and return the CSV paths written.

    Each file is written to ``<name>.tmp`` and renamed, and ``generator.json`` is written
    last (and removed first), so a crash never leaves a dataset that looks complete.
    Same arguments => byte-identical files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "generator.json"
    if marker.exists():
        marker.unlink()  # an interrupted regeneration must not look finished
    items = build(seed=seed, scale=scale, vehicles=vehicles)
    written: list[Path] = []
    rendered: dict[str, bytes] = {}
    for item in items:
        data = rendered.get(item.duplicate_of or "") if item.duplicate_of else None
        if data is None:
            data = render_csv(item.capture)
        rendered[item.relpath] = data
        path = out / item.relpath
        _write_atomic(path, data)
        item.capture.source = str(path)
        item.capture.sha256 = hashlib.sha256(data).hexdigest()
        written.append(path)
    _write_atomic(marker, _manifest_bytes(items, seed=seed, scale=scale, vehicles=vehicles))
    return written


def generate_captures(*, seed: int = 0, scale: float = 1.0, vehicles: int = 2, splits: Iterable[str] | None = None) -> list[Capture]:
    """The captures ``generate`` would write, in memory (``sha256`` left empty).

    ``splits`` restricts generation to some split dirs; every capture has its own random
    stream, so a subset is identical to the same captures of a full run.
    """
    return [item.capture for item in build(seed=seed, scale=scale, vehicles=vehicles, splits=splits)]


def build(*, seed: int = 0, scale: float = 1.0, vehicles: int = 2, splits: Iterable[str] | None = None) -> list[SyntheticCapture]:
    """Generate every capture of the dataset with its ``generator.json`` metadata."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    if vehicles < 2:
        raise ValueError(f"vehicles must be >= 2 (a known and an unknown vehicle), got {vehicles!r}")
    wanted = set(SPLITS if splits is None else splits)
    unknown = sorted(wanted - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; expected some of {list(SPLITS)}")
    fleet = make_fleet(seed, vehicles)
    plans = capture_plans(scale, [v.name for v in fleet])
    by_name = {v.name: v for v in fleet}
    items: list[SyntheticCapture] = []
    done: dict[str, SyntheticCapture] = {}
    for plan in plans:
        if plan.split not in wanted and not (plan.attack == "duplicate" and "train_02_with_attacks" in wanted):
            continue
        if plan.attack == "duplicate":
            items.append(_duplicate(plan, done.get(plan.name) or _make_capture(by_name[plan.vehicle], _original(plan), seed)))
            continue
        item = _make_capture(by_name[plan.vehicle], plan, seed)
        done[plan.name] = item
        items.append(item)
    return items


def capture_plans(scale: float, vehicle_names: Sequence[str]) -> list[_Plan]:
    """Which captures exist, in which split, for which vehicle, attack and duration."""
    train = max(TRAIN_SECONDS * scale, MIN_SECONDS)
    test = max(TEST_SECONDS * scale, MIN_SECONDS)
    known, unknown = vehicle_names[0], list(vehicle_names[1:])

    def other(i: int) -> str:
        return unknown[i % len(unknown)]

    s = SPLITS
    return [
        _Plan(s[0], "attack-free-1", known, "normal", train),
        _Plan(s[0], "attack-free-2", known, "normal", train),
        _Plan(s[1], "DoS-1", known, "DoS", train),
        _Plan(s[1], "fuzzing-1", known, "fuzzing", train),
        _Plan(s[1], "spoofing-1", known, "spoofing", train),
        _Plan(s[1], "attack-free-1", known, "duplicate", train),
        _Plan(s[2], "DoS-2", known, "DoS", test),
        _Plan(s[2], "fuzzing-2", known, "fuzzing", test),
        _Plan(s[2], "spoofing-2", known, "spoofing", test),
        _Plan(s[3], "DoS-3", other(0), "DoS", test),
        _Plan(s[3], "fuzzing-3", other(1), "fuzzing", test),
        _Plan(s[3], "spoofing-3", other(2), "spoofing", test),
        _Plan(s[4], "masquerade-1", known, "masquerade", test),
        _Plan(s[4], "malfunction-1", known, "malfunction", test),
        _Plan(s[5], "masquerade-2", other(0), "masquerade", test),
        _Plan(s[5], "malfunction-2", other(1), "malfunction", test),
        _Plan(s[6], "suppress-1", known, "suppress", test, variant=0),
        _Plan(s[6], "suppress-2", known, "suppress", test, variant=1),
        _Plan(s[7], "masquerade-3", known, "masquerade_timed", test, variant=0),
        _Plan(s[7], "masquerade-4", known, "masquerade_timed", test, variant=1),
    ]


def render_csv(cap: Capture) -> bytes:
    """The can-train-and-test v1.5 CSV bytes of a capture, built without a per-row Python loop.

    Every row is laid out in a fixed 41-column byte matrix (timestamp, 3-digit hex ID, up to
    16 hex payload digits, attack flag); the payload digits past ``2 * dlc`` are masked out.
    """
    n = len(cap)
    header = b"timestamp,arbitration_id,data_field,attack\n"
    if n == 0:
        return header
    micros = np.rint((cap.timestamp - BASE_EPOCH) * 1e6).astype(np.int64)
    secs = BASE_EPOCH + micros // 1_000_000
    frac = micros % 1_000_000
    if secs.min() < 10**9 or secs.max() >= 10**10:
        raise ValueError(f"{cap.name}: timestamps must be 10-digit epoch seconds")
    hexd = np.frombuffer(b"0123456789ABCDEF", np.uint8)
    m = np.empty((n, 41), np.uint8)
    m[:, 0:10] = _digits(secs, 10)
    m[:, 10] = ord(".")
    m[:, 11:17] = _digits(frac, 6)
    m[:, 17] = ord(",")
    ids = cap.can_id.astype(np.int64)
    if ids.max() > 0x7FF or ids.min() < 0:
        raise ValueError(f"{cap.name}: only 11-bit identifiers fit the 3-digit ID column")
    m[:, 18:21] = hexd[np.stack([(ids >> 8) & 15, (ids >> 4) & 15, ids & 15], axis=1)]
    m[:, 21] = ord(",")
    pay = cap.payload.astype(np.int64)
    m[:, 22:38:2] = hexd[pay >> 4]
    m[:, 23:38:2] = hexd[pay & 15]
    m[:, 38] = ord(",")
    m[:, 39] = ord("0") + cap.label
    m[:, 40] = ord("\n")
    keep = np.ones((n, 41), bool)
    keep[:, 22:38] = np.arange(16)[None, :] < 2 * cap.dlc.astype(np.int64)[:, None]
    return header + m[keep].tobytes()


# --------------------------------------------------------------------------- vehicles


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


# --------------------------------------------------------------------------- legitimate traffic


def legit_traffic(veh: Vehicle, rng: np.random.Generator, seconds: float) -> _Frames:
    """Every message of the vehicle for ``seconds``, serialised on the bus, starting at t=0.

    Each ECU ticks at its (drifting) period from a random phase; the tick jitter has std
    ``jitter * min(period, 25 ms)``: task scheduling and bus load delay a message by a
    fraction of a millisecond whatever its period, so slow messages are relatively steadier,
    as measured on real captures.
    """
    parts = []
    by_ecu: dict[int, list[IdSpec]] = {}
    for spec in veh.ids:
        by_ecu.setdefault(spec.ecu, []).append(spec)
    for members in by_ecu.values():
        lead = members[0]
        period = lead.period * (1.0 + lead.drift)
        phase = rng.uniform(0.0, period)
        n = max(int(np.ceil((seconds - phase) / period)), 0)
        sigma = lead.jitter * min(lead.period, 0.025) / np.sqrt(2.0)
        ticks = phase + period * np.arange(n) + rng.normal(0.0, sigma, n)
        for spec in members:
            t = ticks + spec.offset + rng.normal(0.0, 2e-5, n)
            state = _capture_state(rng, spec)
            parts.append(_Frames.make(t, spec.can_id, spec.dlc, payloads(spec, rng, n, state), 0))
    frames = _Frames.concat(parts)
    frames.t = _serialise(frames.t, frames.dlc)
    frames.t = _micros(frames.t - frames.t[0])
    return frames.select(frames.t < seconds)


def _micros(t: np.ndarray) -> np.ndarray:
    """Quantise seconds to the CSV's microsecond grid.

    Everything (frame times, episode bounds) lives on this grid before any comparison, so an
    "inside an episode" test gives the same answer in memory, in the file and in
    generator.json.
    """
    return np.rint(np.asarray(t, np.float64) * 1e6) / 1e6


def payloads(spec: IdSpec, rng: np.random.Generator, n: int, state: dict[int, int] | None = None) -> np.ndarray:
    """``n`` consecutive payloads of a message: template, signals, counter, then checksum."""
    pay = np.zeros((n, 8), np.uint8)
    tmpl = np.array(spec.template, np.uint8)
    for b, v in (state or {}).items():
        tmpl[b] = v
    pay[:, : spec.dlc] = tmpl[: spec.dlc]
    for sig in spec.signals:
        _put_signal(pay, sig, _signal_values(rng, sig, n))
    if spec.counter is not None:
        c = spec.counter
        _put_counter(pay, c, (int(rng.integers(0, 1 << c.bits)) + np.arange(n)) & ((1 << c.bits) - 1))
    apply_checksum(spec, pay)
    return pay


def apply_checksum(spec: IdSpec, pay: np.ndarray) -> None:
    """Recompute the checksum byte in place (attackers that forge content do this too)."""
    if spec.checksum is None or len(pay) == 0:
        return
    total = pay[:, : spec.dlc].astype(np.int64).sum(axis=1) - pay[:, spec.checksum]
    pay[:, spec.checksum] = (total + spec.salt) & 0xFF


def _capture_state(rng: np.random.Generator, spec: IdSpec) -> dict[int, int]:
    return {b: int(rng.choice([0x00, 0x01, 0x02, 0x04, 0x10, 0x20])) for b in spec.state_bytes}


def _signal_values(rng: np.random.Generator, sig: Signal, n: int) -> np.ndarray:
    """A smooth random walk folded into [lo, hi], plus a little sensor noise.

    The walk is a moving average of Gaussian increments (smooth like a physical quantity),
    normalised so that ``activity`` sets how far it wanders over the capture.
    """
    if n == 0:
        return np.zeros(0, np.int64)
    walk = np.cumsum(rng.standard_normal(n))
    m = int(min(max(n // 50, 1), 50))
    c = np.concatenate([[0.0], np.cumsum(walk)])
    smooth = np.empty(n)
    smooth[m - 1 :] = (c[m:] - c[:-m]) / m
    smooth[: m - 1] = smooth[m - 1]
    x = rng.uniform() + sig.activity * smooth / np.sqrt(n)
    x = 1.0 - np.abs((x % 2.0) - 1.0)  # fold into [0, 1]
    v = np.rint(sig.lo + x * (sig.hi - sig.lo)).astype(np.int64)
    if sig.noise:
        v = v + rng.integers(-sig.noise, sig.noise + 1, n)
    return np.clip(v, sig.lo, sig.hi)


def _put_signal(pay: np.ndarray, sig: Signal, v: np.ndarray) -> None:
    if sig.width == 2:
        pay[:, sig.byte] = (v >> 8) & 0xFF
        pay[:, sig.byte + 1] = v & 0xFF
    else:
        pay[:, sig.byte] = v & 0xFF


def _put_counter(pay: np.ndarray, c: Counter, values: np.ndarray) -> None:
    mask = ((1 << c.bits) - 1) << c.shift
    pay[:, c.byte] = (pay[:, c.byte] & (~mask & 0xFF)) | ((values.astype(np.int64) << c.shift) & mask)


def _serialise(t: np.ndarray, dlc: np.ndarray) -> np.ndarray:
    """Frames cannot overlap on the bus: t'_i = max(t_i, t'_{i-1} + busy_{i-1}), vectorised.

    With G the cumulative busy time, t'_i = G_i + max_{j<=i}(t_j - G_j).
    """
    busy = (47.0 + 8.0 * dlc.astype(np.float64)) * 1.1 / BUS_BITRATE
    g = np.concatenate([[0.0], np.cumsum(busy[:-1])])
    return g + np.maximum.accumulate(t - g)


# --------------------------------------------------------------------------- attacks


def episodes(rng: np.random.Generator, seconds: float, total: float, n: int | None = None) -> np.ndarray:
    """``n`` non-overlapping (start, end) episodes summing to ``total`` seconds.

    The capture is cut into ``n`` equal slots and each episode lies inside its own slot, so
    episodes never overlap and there is always at least one.
    """
    n = n or int(np.clip(seconds // 5, 1, 4))
    total = min(total, 0.5 * seconds)
    w = rng.uniform(0.7, 1.3, n)
    lengths = total * w / w.sum()
    slot = seconds / n
    margin = 0.03 * slot
    lengths = np.minimum(lengths, slot - 2 * margin)
    starts = np.arange(n) * slot + margin + rng.uniform(0, 1, n) * (slot - 2 * margin - lengths)
    return _micros(np.stack([starts, starts + lengths], axis=1))


def _in_episodes(t: np.ndarray, eps: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(t), bool)
    for s, e in eps:
        inside |= (t >= s) & (t < e)
    return inside


def _ticks(rng: np.random.Generator, eps: np.ndarray, interval: float, jitter: float = 0.02) -> np.ndarray:
    """Injection times every ``interval`` inside each episode (half-open [start, end)), with
    small relative jitter, on the microsecond grid."""
    out = []
    for s, e in eps:
        base = np.arange(s + rng.uniform(0, interval), e, interval)
        noisy = np.clip(base + rng.normal(0, jitter * interval, base.size), s, e - 1e-6)
        out.append(_micros(noisy))
    return np.sort(np.concatenate(out)) if out else np.zeros(0)


def _attack_seconds(rng: np.random.Generator, n_legit: int, attack_rate: float, lo: float = 0.02, hi: float = 0.08) -> float:
    """Episode time that makes injected frames a target share (``lo``..``hi``) of the capture."""
    share = rng.uniform(lo, hi)
    return share / (1.0 - share) * n_legit / attack_rate


def _dos(veh: Vehicle, legit: _Frames, rng: np.random.Generator, seconds: float, variant: int) -> tuple[_Frames, np.ndarray, dict]:
    """Flood the highest-priority ID 0x000 with zero payloads every 0.3 ms."""
    eps = episodes(rng, seconds, _attack_seconds(rng, len(legit), 1 / DOS_INTERVAL_S))
    t = _ticks(rng, eps, DOS_INTERVAL_S)
    atk = _Frames.make(t, 0, 8, np.zeros((len(t), 8), np.uint8), 1)
    return atk, np.ones(len(legit), bool), {"episodes": eps, "target_id": _hex_id(0)}


def _fuzzing(veh: Vehicle, legit: _Frames, rng: np.random.Generator, seconds: float, variant: int) -> tuple[_Frames, np.ndarray, dict]:
    """Random IDs over the whole 11-bit space with random 8-byte payloads every 0.5 ms."""
    eps = episodes(rng, seconds, _attack_seconds(rng, len(legit), 1 / FUZZ_INTERVAL_S))
    t = _ticks(rng, eps, FUZZ_INTERVAL_S)
    ids = rng.integers(0, 0x800, len(t))
    atk = _Frames.make(t, ids, 8, rng.integers(0, 256, (len(t), 8), dtype=np.uint8), 1)
    return atk, np.ones(len(legit), bool), {"episodes": eps}


def _spoofing(veh: Vehicle, legit: _Frames, rng: np.random.Generator, seconds: float, variant: int) -> tuple[_Frames, np.ndarray, dict]:
    """Inject the RPM message at 3-8x its rate with one forged, constant RPM value."""
    spec = veh.spec(veh.rpm_id)
    factor = float(rng.uniform(3, 8))
    interval = spec.period / factor
    eps = episodes(rng, seconds, _attack_seconds(rng, len(legit), 1 / interval, 0.02, 0.06))
    t = _ticks(rng, eps, interval)
    pay = payloads(spec, rng, 1)
    rpm = next(s for s in spec.signals if s.width == 2)
    _put_signal(pay, rpm, np.array([int(rng.integers(rpm.lo, rpm.hi))]))
    apply_checksum(spec, pay)
    atk = _Frames.make(t, spec.can_id, spec.dlc, np.repeat(pay, len(t), axis=0), 1)
    info = {"episodes": eps, "target_id": _hex_id(spec.can_id), "rate_factor": round(factor, 2)}
    return atk, np.ones(len(legit), bool), info


def _masquerade(veh: Vehicle, legit: _Frames, rng: np.random.Generator, seconds: float, variant: int) -> tuple[_Frames, np.ndarray, dict]:
    """Untimed masquerade: the real sender is silenced and an attacker sends the ID at a
    different (faster: 35-60 % of the) period with a forged signal, counter and checksum
    kept plausible. Faster, because a slower impostor of a 10-20 ms message could not
    make up even 1 % of the frames."""
    spec = _pick(rng, veh, lambda s: bool(s.signals) and s.period <= 0.02 and s.can_id != veh.rpm_id)
    interval = spec.period * float(rng.uniform(0.35, 0.6))
    need = _attack_seconds(rng, len(legit), 1 / interval, 0.015, 0.05)
    eps = episodes(rng, seconds, need)
    t = _ticks(rng, eps, interval, jitter=spec.jitter)
    pay = payloads(spec, rng, len(t))
    for sig in spec.signals:
        _put_signal(pay, sig, np.full(len(t), int(rng.integers(sig.lo, sig.hi + 1))))
    apply_checksum(spec, pay)
    atk = _Frames.make(t, spec.can_id, spec.dlc, pay, 1)
    keep = ~((legit.can_id == spec.can_id) & _in_episodes(legit.t, eps))
    info = {"episodes": eps, "target_id": _hex_id(spec.can_id), "period_ms": round(interval * 1e3, 3), "timed": False}
    return atk, keep, info


def _masquerade_timed(veh: Vehicle, legit: _Frames, rng: np.random.Generator, seconds: float, variant: int) -> tuple[_Frames, np.ndarray, dict]:
    """Timed masquerade: the attacker takes over the sender's exact schedule; the only tell
    is a frozen counter (variant 0) or a replayed constant payload (variant 1)."""
    spec = _pick(rng, veh, lambda s: s.counter is not None and s.period <= 0.02 and s.can_id != veh.rpm_id)
    need = _attack_seconds(rng, len(legit), 1 / spec.period, 0.015, 0.05)
    eps = episodes(rng, seconds, need)
    hit = (legit.can_id == spec.can_id) & _in_episodes(legit.t, eps)
    atk = legit.select(hit)
    atk.label[:] = 1
    for s, e in eps:
        ep = (atk.t >= s) & (atk.t < e)
        if not ep.any():
            continue
        first = atk.payload[np.argmax(ep)].copy()
        if variant == 0:
            c = spec.counter
            sub = atk.payload[ep]
            value = (int(first[c.byte]) >> c.shift) & ((1 << c.bits) - 1)
            _put_counter(sub, c, np.full(len(sub), value))
            apply_checksum(spec, sub)
            atk.payload[ep] = sub
        else:
            atk.payload[ep] = first
    info = {"episodes": eps, "target_id": _hex_id(spec.can_id), "timed": True, "tell": "frozen_counter" if variant == 0 else "constant_payload"}
    return atk, ~hit, info


def _malfunction(veh: Vehicle, legit: _Frames, rng: np.random.Generator, seconds: float, variant: int) -> tuple[_Frames, np.ndarray, dict]:
    """A faulty ECU: one legitimate ID also appears every 2-5 ms with erratic random payloads."""
    spec = _pick(rng, veh, lambda s: s.period <= 0.025 and s.can_id != veh.rpm_id)
    interval = float(rng.uniform(0.002, 0.005))
    eps = episodes(rng, seconds, _attack_seconds(rng, len(legit), 1 / interval))
    t = _ticks(rng, eps, interval, jitter=0.1)
    pay = rng.integers(0, 256, (len(t), 8), dtype=np.uint8)
    pay[:, spec.dlc :] = 0
    atk = _Frames.make(t, spec.can_id, spec.dlc, pay, 1)
    info = {"episodes": eps, "target_id": _hex_id(spec.can_id), "interval_ms": round(interval * 1e3, 3)}
    return atk, np.ones(len(legit), bool), info


def _suppress(veh: Vehicle, legit: _Frames, rng: np.random.Generator, seconds: float, variant: int) -> tuple[_Frames, np.ndarray, dict]:
    """Silence one ID for episodes. Unlabelled, as in the real test_05 (attack is all 0);
    the silenced ID and time ranges go to generator.json so evaluation can still score it."""
    limit = 0.025 if variant == 0 else 0.1
    spec = _pick(rng, veh, lambda s: s.period <= limit and (variant == 0 or s.period > 0.025))
    eps = episodes(rng, seconds, float(rng.uniform(0.2, 0.35)) * seconds)
    keep = ~((legit.can_id == spec.can_id) & _in_episodes(legit.t, eps))
    empty = _Frames.make(np.zeros(0), 0, 0, np.zeros((0, 8), np.uint8), 0)
    info = {"episodes": eps, "target_id": _hex_id(spec.can_id), "labelled": False, "suppressed_frames": int((~keep).sum())}
    return empty, keep, info


def _pick(rng: np.random.Generator, veh: Vehicle, ok: Callable[[IdSpec], bool]) -> IdSpec:
    """A random message satisfying ``ok``, else the fastest one (never fails)."""
    cands = [s for s in veh.ids if ok(s)]
    if not cands:
        cands = sorted(veh.ids, key=lambda s: (s.period, s.can_id))[:1]
    return cands[int(rng.integers(len(cands)))]


_ATTACKS: dict[str, Callable[..., tuple[_Frames, np.ndarray, dict]]] = {
    "DoS": _dos,
    "fuzzing": _fuzzing,
    "spoofing": _spoofing,
    "masquerade": _masquerade,
    "masquerade_timed": _masquerade_timed,
    "malfunction": _malfunction,
    "suppress": _suppress,
}


# --------------------------------------------------------------------------- captures and files


def _make_capture(veh: Vehicle, plan: _Plan, seed: int) -> SyntheticCapture:
    rng = _rng(seed, f"{plan.split}/{plan.name}")
    legit = legit_traffic(veh, rng, plan.seconds)
    info: dict = {"vehicle": veh.name, "attack": plan.attack, "seconds": round(plan.seconds, 3)}
    if plan.attack == "normal":
        frames = legit
    else:
        atk, keep, extra = _ATTACKS[plan.attack](veh, legit, rng, plan.seconds, plan.variant)
        frames = _Frames.concat([legit.select(keep), atk.select((atk.t >= 0) & (atk.t < plan.seconds))])
        eps = extra.pop("episodes")
        info.update(extra)
        info["episodes"] = [[round(BASE_EPOCH + float(s), 6), round(BASE_EPOCH + float(e), 6)] for s, e in eps]
    cap = Capture(
        timestamp=BASE_EPOCH + _micros(frames.t),  # already on the grid: memory and file agree
        can_id=frames.can_id.astype(np.int32),
        dlc=frames.dlc.astype(np.uint8),
        payload=frames.payload,
        label=frames.label,
        name=plan.name,
        split=plan.split,
        attack_type=attack_type_from_name(plan.name),  # what read_capture will say for the file
        meta=dict(info),
    )
    return SyntheticCapture(relpath=f"{plan.split}/{plan.name}.csv", capture=cap, info=info)


def _original(plan: _Plan) -> _Plan:
    return _Plan("train_01_attack_free", plan.name, plan.vehicle, "normal", plan.seconds)


def _duplicate(plan: _Plan, original: SyntheticCapture) -> SyntheticCapture:
    """A byte-identical copy in train_02, as in the real data (the pipeline must dedup it)."""
    src = original.capture
    cap = Capture(
        timestamp=src.timestamp, can_id=src.can_id, dlc=src.dlc, payload=src.payload, label=src.label,
        name=src.name, split=plan.split, attack_type=src.attack_type, meta=dict(src.meta),
    )
    return SyntheticCapture(relpath=f"{plan.split}/{plan.name}.csv", capture=cap, info=dict(original.info), duplicate_of=original.relpath)


def _manifest_bytes(items: list[SyntheticCapture], *, seed: int, scale: float, vehicles: int) -> bytes:
    """generator.json: arguments, version, vehicles and one entry per file (relative paths,
    no clock or host values, so it is as deterministic as the CSVs)."""
    fleet = make_fleet(seed, vehicles)
    files = []
    for item in items:
        cap = item.capture
        entry = {
            "path": item.relpath,
            "split": cap.split,
            "capture": cap.name,
            "attack_type": cap.attack_type,
            "frames": len(cap),
            "attack_frames": cap.n_attack,
            "duration_s": round(cap.duration_s, 6),
            "sha256": cap.sha256,
            "duplicate_of": item.duplicate_of,
        }
        entry.update({k: v for k, v in item.info.items() if k not in entry})
        files.append(entry)
    manifest = {
        "generator": "canids.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "vehicles": vehicles,
        "base_epoch": BASE_EPOCH,
        "n_files": len(files),
        "n_frames": int(sum(f["frames"] for f in files)),
        "n_attack_frames": int(sum(f["attack_frames"] for f in files)),
        "vehicle_specs": {v.name: vehicle_summary(v) for v in fleet},
        "suppress": [
            {"path": f["path"], "target_id": f["target_id"], "episodes": f["episodes"]}
            for f in files if f["attack_type"] == "suppress"
        ],
        "files": files,
    }
    return (json.dumps(manifest, indent=2) + "\n").encode("utf-8")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``<name>.tmp`` next to ``path``, fsync, then rename: readers never see a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _rng(seed: int, name: str) -> np.random.Generator:
    """An independent stream per (seed, name): stable across Python runs (crc32, not hash())."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def _digits(x: np.ndarray, width: int) -> np.ndarray:
    """ASCII decimal digits of non-negative ints as an (n, width) uint8 matrix, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (ord("0") + (x[:, None] // powers[None, :]) % 10).astype(np.uint8)


def _hex_id(can_id: int) -> str:
    return f"0x{int(can_id):03X}"
