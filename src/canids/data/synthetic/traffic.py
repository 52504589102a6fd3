"""Legitimate traffic of a synthetic vehicle: what its ECUs put on the bus during a capture.

Why it exists: turning a vehicle's catalogue (``canids.data.synthetic.vehicles``) into frames
is its own job: ECU clocks with drift and jitter, payloads with smooth signals, rolling
counters and checksums, and bus serialisation (frames queue behind each other at 500 kbit/s).
The attacks reuse its payload and checksum helpers to forge plausible content, and its
microsecond grid so that memory, files and generator.json agree on every timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from canids.data.synthetic.vehicles import Counter, IdSpec, Signal, Vehicle

#: Classical CAN at 500 kbit/s: a frame occupies the bus for (47 + 8 * DLC) bits plus ~10 %
#: bit stuffing. Frames queue behind each other, which is where real arbitration jitter comes from.
BUS_BITRATE = 500_000.0


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
