"""The synthetic dataset as files: which captures exist, how each is built, and how it is written.

Why it exists: this is the generator's entry point (``generate``, ``build``,
``generate_captures``). It plans the captures of every split (vehicle, attack, duration),
builds each one from its own random stream (legitimate traffic plus the attack), renders the
can-train-and-test CSV bytes, and writes them atomically with ``generator.json`` last, so that
the same arguments give byte-identical files and a crash never leaves a dataset that looks
complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from canids.shape import ATTACK_FREE_SPLIT, SPLITS, TRAIN_SPLITS
from canids.util import atomic_path, atomic_write_bytes
from canids.data.frames import Capture
from canids.data.readers.names import attack_family
from canids.data.synthetic.attacks import _ATTACKS
from canids.data.synthetic.traffic import _Frames, _micros, legit_traffic
from canids.data.synthetic.vehicles import Vehicle, _rng, make_fleet, vehicle_summary

GENERATOR_VERSION = "1.3.0"  # 1.1: masquerade captures named timed/untimed; 1.2: onboarding captures; 1.3: attack-free lead

#: Attack-free captures of the unknown vehicle(s), for onboarding (``onboarding:`` in the catalog):
#: not a split, so no stage trains or tests on them.
ONBOARDING_DIRECTORY = "onboarding_unknown_vehicle"

#: Captures restart at this epoch (2023-01-01 UTC), as set_01 of can-train-and-test does.
BASE_EPOCH = 1672531200

#: Seconds of traffic per capture at ``scale=1``. Chosen so that the default dataset has
#: ~0.6-0.75 M frames: every stage trains on a 2-core CPU in minutes.
TRAIN_SECONDS = 25.0
TEST_SECONDS = 12.5
#: Floor on a capture's duration, so that tiny scales (tests) still give a few hundred
#: 100-frame windows per split and at least one attack episode per attack capture.
MIN_SECONDS = 8.0
#: The first line of every CSV the generator writes (can-train-and-test v1.5 columns).
_HEADER = b"timestamp,arbitration_id,data_field,attack\n"



@dataclass(frozen=True)
class _Plan:
    """One capture to generate: where it goes, which vehicle, which attack, how long."""

    split: str
    name: str
    vehicle: str
    attack: str  # normal, DoS, fuzzing, spoofing, masquerade, malfunction, suppress, masquerade_timed
    seconds: float
    variant: int = 0
    #: the random stream's key when it is not ``split/name``: captures renamed so that their
    #: names say their attack family keep the traffic they had under their first name
    stream: str = ""


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

    Captures are built, written and dropped one at a time (``build_each``), and each CSV is
    rendered in blocks of ``_RENDER_ROWS`` rows, so memory is bounded by the largest capture,
    whatever ``scale`` is; a duplicate is copied from its original's file. Each file is written
    to a temporary sibling and renamed, and ``generator.json`` is written last (and removed
    first), so a crash never leaves a dataset that looks complete. Same arguments =>
    byte-identical files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "generator.json"
    if marker.exists():
        marker.unlink()  # an interrupted regeneration must not look finished
    written: list[Path] = []
    entries: dict[str, dict] = {}
    for item in build_each(seed=seed, scale=scale, vehicles=vehicles, copies=False):
        path = out / item.relpath
        if item.capture is None:  # a byte-identical copy of a file written before
            assert item.duplicate_of is not None
            _copy_file(out / item.duplicate_of, path)
            entries[item.relpath] = {**entries[item.duplicate_of], "path": item.relpath, "split": Path(item.relpath).parent.as_posix(), "duplicate_of": item.duplicate_of}
        else:
            item.capture.sha256 = _write_csv(path, item.capture)
            item.capture.source = str(path)
            entries[item.relpath] = _file_entry(item)
        written.append(path)
    atomic_write_bytes(marker, _manifest_bytes(list(entries.values()), seed=seed, scale=scale, vehicles=vehicles))
    return written


def generate_captures(*, seed: int = 0, scale: float = 1.0, vehicles: int = 2, splits: Iterable[str] | None = None) -> list[Capture]:
    """The captures ``generate`` would write, in memory (``sha256`` left empty).

    ``splits`` restricts generation to some split dirs; every capture has its own random
    stream, so a subset is identical to the same captures of a full run.
    """
    return [item.capture for item in build(seed=seed, scale=scale, vehicles=vehicles, splits=splits)]


def build(*, seed: int = 0, scale: float = 1.0, vehicles: int = 2, splits: Iterable[str] | None = None) -> list[SyntheticCapture]:
    """Generate every capture of the dataset with its ``generator.json`` metadata, in memory."""
    return list(build_each(seed=seed, scale=scale, vehicles=vehicles, splits=splits))


def build_each(*, seed: int = 0, scale: float = 1.0, vehicles: int = 2, splits: Iterable[str] | None = None, copies: bool = True) -> Iterator[SyntheticCapture]:
    """The captures of the dataset one at a time, in plan order.

    A duplicate (train_02 repeats a train_01 capture) holds its own copy of the original's
    frames when ``copies`` is true; otherwise, when its original came earlier, its ``capture``
    is None and only ``duplicate_of`` says which file it repeats, so nothing is kept between
    captures.
    """
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    if vehicles < 2:
        raise ValueError(f"vehicles must be >= 2 (a known and an unknown vehicle), got {vehicles!r}")
    directories = (*SPLITS, ONBOARDING_DIRECTORY)
    wanted = set(directories if splits is None else splits)
    unknown = sorted(wanted - set(directories))
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; expected some of {list(directories)}")
    fleet = make_fleet(seed, vehicles)
    plans = capture_plans(scale, [v.name for v in fleet])
    by_name = {v.name: v for v in fleet}
    done: dict[str, SyntheticCapture | str] = {}
    for plan in plans:
        if plan.split not in wanted and not (plan.attack == "duplicate" and TRAIN_SPLITS[1] in wanted):
            continue
        if plan.attack == "duplicate":
            original = done.get(plan.name)
            if isinstance(original, str):
                yield SyntheticCapture(relpath=f"{plan.split}/{plan.name}.csv", capture=None, duplicate_of=original)  # type: ignore[arg-type]
            else:
                yield _duplicate(plan, original or _make_capture(by_name[plan.vehicle], _original(plan), seed))
            continue
        item = _make_capture(by_name[plan.vehicle], plan, seed)
        done[plan.name] = item if copies else item.relpath
        yield item
        del item


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
        _Plan(s[4], "masquerade-untimed-1", known, "masquerade", test, stream="masquerade-1"),
        _Plan(s[4], "malfunction-1", known, "malfunction", test),
        _Plan(s[5], "masquerade-untimed-2", other(0), "masquerade", test, stream="masquerade-2"),
        _Plan(s[5], "malfunction-2", other(1), "malfunction", test),
        _Plan(s[6], "suppress-1", known, "suppress", test, variant=0),
        _Plan(s[6], "suppress-2", known, "suppress", test, variant=1),
        _Plan(s[7], "masquerade-timed-1", known, "masquerade_timed", test, variant=0, stream="masquerade-3"),
        _Plan(s[7], "masquerade-timed-2", known, "masquerade_timed", test, variant=1, stream="masquerade-4"),
        *(_Plan(ONBOARDING_DIRECTORY, f"attack-free-{name}-{k}", name, "normal", test) for name in unknown for k in (1, 2)),
    ]


def render_csv(cap: Capture) -> bytes:
    """The can-train-and-test v1.5 CSV bytes of a capture, built without a per-row Python loop.

    Every row is laid out in a fixed 41-column byte matrix (timestamp, 3-digit hex ID, up to
    16 hex payload digits, attack flag); the payload digits past ``2 * dlc`` are masked out.
    """
    n = len(cap)
    header = _HEADER
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


# --------------------------------------------------------------------------- captures and files


def _make_capture(veh: Vehicle, plan: _Plan, seed: int) -> SyntheticCapture:
    rng = _rng(seed, f"{plan.split}/{plan.stream or plan.name}")
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
        attack_type=attack_family(plan.name, bool(frames.label.any())),  # what read_capture will say for the file
        meta=dict(info),
    )
    return SyntheticCapture(relpath=f"{plan.split}/{plan.name}.csv", capture=cap, info=info)


#: Rows rendered per block when a CSV is written (about 40 MB of text): bounds the renderer's memory.
_RENDER_ROWS = 1 << 20


def _write_csv(path: Path, cap: Capture) -> str:
    """Write ``render_csv(cap)`` atomically, block by block; its sha256."""
    digest = hashlib.sha256()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        for start in range(0, max(len(cap), 1), _RENDER_ROWS):
            block = render_csv(cap.slice(start, start + _RENDER_ROWS))
            block = block if start == 0 else block[len(_HEADER) :]
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


def _copy_file(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _original(plan: _Plan) -> _Plan:
    return _Plan(ATTACK_FREE_SPLIT, plan.name, plan.vehicle, "normal", plan.seconds)


def _duplicate(plan: _Plan, original: SyntheticCapture) -> SyntheticCapture:
    """A byte-identical copy in train_02, as in the real data (the pipeline must dedup it)."""
    src = original.capture
    cap = Capture(
        timestamp=src.timestamp, can_id=src.can_id, dlc=src.dlc, payload=src.payload, label=src.label,
        name=src.name, split=plan.split, attack_type=src.attack_type, meta=dict(src.meta),
    )
    return SyntheticCapture(relpath=f"{plan.split}/{plan.name}.csv", capture=cap, info=dict(original.info), duplicate_of=original.relpath)


def _file_entry(item: SyntheticCapture) -> dict:
    """The ``generator.json`` entry of one written capture."""
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
    return entry


def _manifest_bytes(files: list[dict], *, seed: int, scale: float, vehicles: int) -> bytes:
    """generator.json: arguments, version, vehicles and one entry per file (relative paths,
    no clock or host values, so it is as deterministic as the CSVs)."""
    fleet = make_fleet(seed, vehicles)
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


def _digits(x: np.ndarray, width: int) -> np.ndarray:
    """ASCII decimal digits of non-negative ints as an (n, width) uint8 matrix, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (ord("0") + (x[:, None] // powers[None, :]) % 10).astype(np.uint8)
