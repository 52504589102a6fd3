"""Attacks of the synthetic dataset: rare episodes that label exactly the injected frames.

Why it exists: each attack (DoS, fuzzing, spoofing, untimed and timed masquerade,
malfunction, suppress) is a function of the vehicle and its legitimate traffic that returns
the frames to inject, which legitimate frames to keep, and what to record in generator.json.
``_ATTACKS`` maps the attack names of the capture plans to these functions.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from canids.data.synthetic.traffic import _Frames, _micros, _put_counter, _put_signal, apply_checksum, payloads
from canids.data.synthetic.vehicles import IdSpec, Vehicle, _hex_id

DOS_INTERVAL_S = 0.0003
FUZZ_INTERVAL_S = 0.0005


#: Every capture begins with this much attack-free traffic (at most a tenth of it), as recordings
#: of real attacks do: the features learn each ID's habits from its first frames in the capture
#: (``graphs.formulas._ROLLING_WARMUP``), and nothing can tell an attack present from a
#: capture's first frame from the ID's own behaviour.
ATTACK_FREE_LEAD_S = 1.0


def episodes(rng: np.random.Generator, seconds: float, total: float, n: int | None = None) -> np.ndarray:
    """``n`` non-overlapping (start, end) episodes summing to ``total`` seconds.

    After the attack-free lead (``ATTACK_FREE_LEAD_S``) the capture is cut into ``n`` equal
    slots and each episode lies inside its own slot, so episodes never overlap and there is
    always at least one.
    """
    n = n or int(np.clip(seconds // 5, 1, 4))
    total = min(total, 0.5 * seconds)
    w = rng.uniform(0.7, 1.3, n)
    lengths = total * w / w.sum()
    lead = min(ATTACK_FREE_LEAD_S, 0.1 * seconds)
    slot = (seconds - lead) / n
    margin = 0.03 * slot
    lengths = np.minimum(lengths, slot - 2 * margin)
    starts = lead + np.arange(n) * slot + margin + rng.uniform(0, 1, n) * (slot - 2 * margin - lengths)
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
