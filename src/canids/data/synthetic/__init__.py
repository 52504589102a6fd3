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

Modules, each with one job (imported absolutely, so ``canids.workflow.code_digest`` follows them):

- ``canids.data.synthetic.vehicles``: the vehicles (IDs, periods, ECUs, payload layout),
  drawn per seed and checked against the real ranges;
- ``canids.data.synthetic.traffic``: their legitimate traffic (timing, payloads, counters,
  checksums, bus serialisation);
- ``canids.data.synthetic.attacks``: the attacks and their registry;
- ``canids.data.synthetic.dataset``: the capture plans, building the captures, the CSV and
  ``generator.json`` bytes, atomic writing and ``generate``.

This package re-exports their public names, so ``from canids.data.synthetic import generate``
keeps working.
"""

from __future__ import annotations

from canids.data.synthetic.attacks import DOS_INTERVAL_S, FUZZ_INTERVAL_S, episodes
from canids.data.synthetic.dataset import (
    BASE_EPOCH,
    GENERATOR_VERSION,
    MIN_SECONDS,
    SPLITS,
    TEST_SECONDS,
    TRAIN_SECONDS,
    SyntheticCapture,
    build,
    build_each,
    capture_plans,
    generate,
    generate_captures,
    render_csv,
)
from canids.data.synthetic.traffic import BUS_BITRATE, apply_checksum, legit_traffic, payloads
from canids.data.synthetic.vehicles import (
    ID_HIGH,
    ID_LOW,
    PERIODS_S,
    Counter,
    IdSpec,
    Signal,
    Vehicle,
    expected_nodes,
    make_fleet,
    make_vehicle,
    vehicle_summary,
)

__all__ = [
    "BASE_EPOCH",
    "BUS_BITRATE",
    "Counter",
    "DOS_INTERVAL_S",
    "FUZZ_INTERVAL_S",
    "GENERATOR_VERSION",
    "ID_HIGH",
    "ID_LOW",
    "IdSpec",
    "MIN_SECONDS",
    "PERIODS_S",
    "SPLITS",
    "Signal",
    "SyntheticCapture",
    "TEST_SECONDS",
    "TRAIN_SECONDS",
    "Vehicle",
    "apply_checksum",
    "build",
    "build_each",
    "capture_plans",
    "episodes",
    "expected_nodes",
    "generate",
    "generate_captures",
    "legit_traffic",
    "make_fleet",
    "make_vehicle",
    "payloads",
    "render_csv",
    "vehicle_summary",
]
