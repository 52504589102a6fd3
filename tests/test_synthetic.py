"""The embedded ``synthetic`` dataset: layout, determinism, realism and attack labelling.

Small scales keep this fast (a capture is never shorter than ``MIN_SECONDS``); the realism
assertions use the ranges measured on real captures (``traffic_stats.REAL_RANGES``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from canids.data import readers, synthetic
from canids.data.frames import Capture
from canids.data.synthetic import dataset as synthetic_dataset
from canids.data.synthetic.dataset import ONBOARDING_DIRECTORY
from canids.data.traffic_stats import REAL_RANGES, traffic_stats, within_real_ranges

SCALE = 0.05
ROW = re.compile(rb"^\d{10}\.\d{6},[0-9A-F]{3},(?:[0-9A-F]{2}){0,8},[01]$")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(root, seed=0, scale=SCALE)
    return root


@pytest.fixture(scope="module")
def items() -> dict[str, synthetic.SyntheticCapture]:
    return {it.relpath: it for it in synthetic.build(seed=0, scale=SCALE)}


@pytest.fixture(scope="module")
def manifest(dataset: Path) -> dict:
    return json.loads((dataset / "generator.json").read_text())


def _by_name(items: dict, name: str) -> synthetic.SyntheticCapture:
    return next(it for it in items.values() if it.capture.name == name and not it.duplicate_of)


def _episodes(item: synthetic.SyntheticCapture) -> np.ndarray:
    return np.asarray(item.info["episodes"], np.float64)


def _inside(t: np.ndarray, eps: np.ndarray) -> np.ndarray:
    return np.any((t[:, None] >= eps[None, :, 0]) & (t[:, None] < eps[None, :, 1]), axis=1)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(dataset: Path, tmp_path: Path) -> None:
    synthetic.generate(tmp_path, seed=0, scale=SCALE)
    assert _tree_digests(tmp_path) == _tree_digests(dataset)


def test_files_rendered_block_by_block_are_the_same_bytes(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """``generate`` writes each CSV in blocks of rows (bounded memory at any scale): blocks that end
    mid-capture give the bytes of one rendering of the whole capture."""
    monkeypatch.setattr(synthetic_dataset, "_RENDER_ROWS", 777)
    synthetic.generate(tmp_path, seed=0, scale=SCALE)
    assert _tree_digests(tmp_path) == _tree_digests(dataset)
    for rel in ("train_02_with_attacks/DoS-1.csv", "train_02_with_attacks/attack-free-1.csv"):
        item = next(it for it in synthetic.build(seed=0, scale=SCALE, splits=["train_02_with_attacks"]) if it.relpath == rel)
        assert (tmp_path / rel).read_bytes() == synthetic.render_csv(item.capture)


def test_different_seed_gives_different_files(dataset: Path, tmp_path: Path) -> None:
    synthetic.generate(tmp_path, seed=1, scale=SCALE)
    mine, other = _tree_digests(tmp_path), _tree_digests(dataset)
    assert mine.keys() == other.keys()
    csvs = [k for k in mine if k.endswith(".csv")]
    assert all(mine[k] != other[k] for k in csvs)


def test_subset_of_splits_matches_full_run(items: dict) -> None:
    only = synthetic.generate_captures(seed=0, scale=SCALE, splits=["test_05_suppress"])
    assert [c.name for c in only] == ["suppress-1", "suppress-2"]
    for cap in only:
        full = items[f"test_05_suppress/{cap.name}.csv"].capture
        assert np.array_equal(cap.timestamp, full.timestamp) and np.array_equal(cap.payload, full.payload)


# ----------------------------------------------------------------------------- layout and manifest


def test_layout_has_every_split_and_the_duplicate(dataset: Path) -> None:
    assert sorted(p.name for p in dataset.iterdir() if p.is_dir()) == sorted([*synthetic.SPLITS, ONBOARDING_DIRECTORY])
    assert sorted(p.stem for p in (dataset / ONBOARDING_DIRECTORY).glob("*.csv")) == ["attack-free-B-1", "attack-free-B-2"]  # the unknown vehicle's, to onboard it
    for split in synthetic.SPLITS:
        assert list((dataset / split).glob("*.csv")), split
    original = dataset / "train_01_attack_free" / "attack-free-1.csv"
    copy = dataset / "train_02_with_attacks" / "attack-free-1.csv"
    assert copy.read_bytes() == original.read_bytes()
    assert not list(dataset.rglob("*.tmp"))
    names = {p.stem for p in (dataset / "train_02_with_attacks").glob("*.csv")}
    assert {"DoS-1", "fuzzing-1", "spoofing-1", "attack-free-1"} <= names


def test_csv_rows_follow_can_train_and_test_format(dataset: Path) -> None:
    for path in sorted(dataset.rglob("*.csv")):
        lines = path.read_bytes().split(b"\n")
        assert lines[0] == b"timestamp,arbitration_id,data_field,attack"
        assert lines[-1] == b""
        body = lines[1:-1]
        assert body[0].startswith(b"1672531200.000000,"), path  # timestamps restart per capture
        bad = [ln for ln in body[:: max(len(body) // 500, 1)] if not ROW.match(ln)]
        assert not bad, (path, bad[:3])
        ts = np.array([float(ln.split(b",", 1)[0]) for ln in body[:2000]])
        assert np.all(np.diff(ts) >= 0), path


def test_generator_json_lists_every_file(dataset: Path, manifest: dict) -> None:
    on_disk = {str(p.relative_to(dataset)) for p in dataset.rglob("*.csv")}
    listed = {f["path"] for f in manifest["files"]}
    assert listed == on_disk
    assert (manifest["seed"], manifest["scale"], manifest["vehicles"]) == (0, SCALE, 2)
    assert manifest["version"] == synthetic.GENERATOR_VERSION
    for entry in manifest["files"]:
        data = (dataset / entry["path"]).read_bytes()
        assert entry["frames"] == data.count(b"\n") - 1
        assert entry["attack_frames"] == data.count(b",1\n")
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    dup = [f for f in manifest["files"] if f["duplicate_of"]]
    assert [(f["path"], f["duplicate_of"]) for f in dup] == [
        ("train_02_with_attacks/attack-free-1.csv", "train_01_attack_free/attack-free-1.csv")
    ]


def test_generator_json_is_written_last_and_removed_first(tmp_path: Path, monkeypatch) -> None:
    order: list[str] = []
    real_write = synthetic_dataset.atomic_write_bytes  # patched where ``generate`` looks it up

    def spy(path: Path, data: bytes) -> None:
        order.append(path.name)
        real_write(path, data)

    monkeypatch.setattr(synthetic_dataset, "atomic_write_bytes", spy)
    synthetic.generate(tmp_path, seed=0, scale=SCALE)
    assert order[-1] == "generator.json" and order.count("generator.json") == 1

    def boom(**kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(synthetic_dataset, "build_each", boom)
    with pytest.raises(RuntimeError):
        synthetic.generate(tmp_path, seed=0, scale=SCALE)
    assert not (tmp_path / "generator.json").exists()


def test_in_memory_captures_match_the_files(dataset: Path, items: dict) -> None:
    for rel in ("train_02_with_attacks/DoS-1.csv", "test_06_masquerade/masquerade-timed-1.csv"):
        disk = readers.read_capture(dataset / rel)
        mem = items[rel].capture
        assert np.array_equal(disk.can_id, mem.can_id)
        assert np.array_equal(disk.dlc, mem.dlc)
        assert np.array_equal(disk.payload, mem.payload)
        assert np.array_equal(disk.label, mem.label)
        assert np.max(np.abs(disk.timestamp - mem.timestamp)) < 1e-6
        assert disk.attack_type == mem.attack_type


# ----------------------------------------------------------------------------- realism


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_attack_free_statistics_within_real_ranges(seed: int) -> None:
    caps = synthetic.generate_captures(seed=seed, scale=SCALE, splits=["train_01_attack_free"])
    stats = traffic_stats(caps)
    assert all(within_real_ranges(stats).values()), (within_real_ranges(stats), stats)
    assert stats["period_hist"]["other"] == 0.0  # only the standard ECU periods
    assert 0.002 <= stats["median_rel_jitter"] <= 0.025


def test_unknown_vehicle_is_credible_and_mostly_different() -> None:
    fleet = synthetic.make_fleet(0, 2)
    a_ids = {s.can_id for s in fleet[0].ids}
    b_ids = {s.can_id for s in fleet[1].ids}
    assert len(a_ids & b_ids) <= 0.15 * min(len(a_ids), len(b_ids))
    b_caps = []
    for i in range(2):
        legit = synthetic.legit_traffic(fleet[1], np.random.default_rng(i), 8.0)
        b_caps.append(Capture(legit.t + synthetic.BASE_EPOCH, legit.can_id, legit.dlc, legit.payload, legit.label))
    assert all(within_real_ranges(traffic_stats(b_caps)).values())


def test_unknown_vehicle_splits_use_vehicle_b(items: dict) -> None:
    caps = [it.capture for it in items.values()]
    a_ids = set(np.unique(np.concatenate([c.can_id for c in caps if c.split == "train_01_attack_free"])))
    for cap in caps:
        legit = set(np.unique(cap.can_id[cap.label == 0]))
        overlap = len(legit & a_ids) / len(legit)
        if "unknown_vehicle" in cap.split:
            assert cap.meta["vehicle"] == "B" and overlap < 0.15, (cap.name, overlap)
        else:
            assert cap.meta["vehicle"] == "A" and overlap == 1.0, (cap.name, overlap)


def test_more_vehicles_spread_over_unknown_splits() -> None:
    caps = synthetic.generate_captures(seed=0, scale=SCALE, vehicles=3, splits=["test_02_unknown_vehicle_known_attack"])
    assert {c.meta["vehicle"] for c in caps} == {"B", "C"}


def test_every_split_has_a_few_hundred_windows_at_small_scale(items: dict) -> None:
    windows: dict[str, int] = {}
    for it in items.values():
        windows[it.capture.split] = windows.get(it.capture.split, 0) + len(it.capture) // 100
    assert set(windows) == {*synthetic.SPLITS, ONBOARDING_DIRECTORY}
    assert min(windows.values()) >= 200, windows


# ----------------------------------------------------------------------------- attacks


def test_attacks_are_labelled_and_rare(items: dict) -> None:
    for it in items.values():
        cap = it.capture
        share = cap.n_attack / len(cap)
        if cap.split.startswith("train_01") or it.duplicate_of or cap.split in ("test_05_suppress", ONBOARDING_DIRECTORY):
            assert share == 0.0, cap.name
        else:
            assert 0.01 <= share <= 0.10, (cap.name, share)
            assert len(_episodes(it)) >= 1
            # every labelled frame lies inside a recorded episode
            assert _inside(cap.timestamp[cap.label == 1], _episodes(it)).all(), cap.name


def test_dos_floods_id_zero_every_0_3_ms(items: dict) -> None:
    for name in ("DoS-1", "DoS-2", "DoS-3"):
        cap = _by_name(items, name).capture
        atk = cap.label == 1
        assert np.array_equal(atk, cap.can_id == 0)  # exactly the injected frames
        assert (cap.payload[atk] == 0).all() and (cap.dlc[atk] == 8).all()
        dt = np.diff(cap.timestamp[atk])
        assert 0.00027 <= np.median(dt) <= 0.00033, (name, np.median(dt))


def test_fuzzing_ids_spread_over_id_space(items: dict) -> None:
    cap = _by_name(items, "fuzzing-1").capture
    ids = cap.can_id[cap.label == 1]
    assert np.bincount(ids // 128, minlength=16).min() > 0  # every 1/16th of 0x000-0x7FF
    assert np.unique(ids).size > 0.3 * min(ids.size, 2048)
    assert np.median(np.diff(cap.timestamp[cap.label == 1])) == pytest.approx(0.0005, rel=0.1)
    assert np.unique(cap.payload[cap.label == 1], axis=0).shape[0] > 0.9 * ids.size


def test_spoofing_injects_the_rpm_id_faster_with_a_forged_value(items: dict) -> None:
    it = _by_name(items, "spoofing-1")
    cap, target = it.capture, int(it.info["target_id"], 16)
    atk = cap.label == 1
    assert (cap.can_id[atk] == target).all()
    assert np.unique(cap.payload[atk], axis=0).shape[0] == 1  # one forged frame, replayed
    spec = synthetic.make_fleet(0, 2)[0].spec(target)
    rate = 1 / np.median(np.diff(cap.timestamp[atk]))
    assert 3 <= rate * spec.period * 1.02 and rate * spec.period <= 8 * 1.02
    legit = cap.timestamp[(cap.can_id == target) & ~atk]  # the real sender keeps going
    assert np.median(np.diff(legit)) == pytest.approx(spec.period, rel=0.05)


def test_untimed_masquerade_replaces_the_sender(items: dict) -> None:
    it = _by_name(items, "masquerade-untimed-1")
    cap, target, eps = it.capture, int(it.info["target_id"], 16), _episodes(it)
    atk = cap.label == 1
    assert (cap.can_id[atk] == target).all()
    legit_in_ep = (cap.can_id == target) & ~atk & _inside(cap.timestamp, eps)
    assert not legit_in_ep.any()  # the real sender is silenced, not just drowned out
    spec = synthetic.make_fleet(0, 2)[0].spec(target)
    assert abs(np.median(np.diff(cap.timestamp[atk])) / spec.period - 1) > 0.2  # different period


def test_timed_masquerade_keeps_the_schedule_and_hides_in_content(items: dict) -> None:
    fleet = synthetic.make_fleet(0, 2)[0]
    for name, tell in (("masquerade-timed-1", "frozen_counter"), ("masquerade-timed-2", "constant_payload")):
        it = _by_name(items, name)
        cap, target = it.capture, int(it.info["target_id"], 16)
        assert it.info["tell"] == tell
        spec = fleet.spec(target)
        mine = cap.can_id == target
        assert np.median(np.diff(cap.timestamp[mine])) == pytest.approx(spec.period, rel=0.05)
        for start, end in _episodes(it):
            ep = mine & (cap.timestamp >= start) & (cap.timestamp < end)
            assert ep.sum() > 3 and (cap.label[ep] == 1).all()
            pay = cap.payload[ep]
            c = spec.counter
            field = (pay[:, c.byte] >> c.shift) & ((1 << c.bits) - 1)
            assert np.unique(field).size == 1  # counter frozen in both variants
            if tell == "constant_payload":
                assert np.unique(pay, axis=0).shape[0] == 1
        legit = cap.payload[mine & (cap.label == 0)]
        legit_field = (legit[:, spec.counter.byte] >> spec.counter.shift) & ((1 << spec.counter.bits) - 1)
        assert np.unique(legit_field).size > 1  # outside episodes the counter rolls


def test_malfunction_sends_erratic_payloads_on_a_legit_id(items: dict) -> None:
    it = _by_name(items, "malfunction-1")
    cap, target = it.capture, int(it.info["target_id"], 16)
    atk = cap.label == 1
    assert (cap.can_id[atk] == target).all()
    assert np.unique(cap.payload[atk], axis=0).shape[0] > 0.9 * atk.sum()
    assert ((cap.can_id == target) & ~atk).any()


def test_suppress_is_unlabelled_but_recorded(items: dict, manifest: dict) -> None:
    recorded = {s["path"]: s for s in manifest["suppress"]}
    assert set(recorded) == {"test_05_suppress/suppress-1.csv", "test_05_suppress/suppress-2.csv"}
    for rel, entry in recorded.items():
        cap = items[rel].capture
        assert cap.n_attack == 0
        target, eps = int(entry["target_id"], 16), np.asarray(entry["episodes"])
        mine = cap.timestamp[cap.can_id == target]
        assert not _inside(mine, eps).any()  # silenced during episodes
        assert mine.size > 0.4 * (cap.duration_s / synthetic.make_fleet(0, 2)[0].spec(target).period)


# ----------------------------------------------------------------------------- size


def test_default_dataset_size(tmp_path: Path) -> None:
    # Generation time is a benchmark figure, not a test: bench/synthetic_stats.py prints it
    # ("generate_s").
    synthetic.generate(tmp_path, seed=0)
    meta = json.loads((tmp_path / "generator.json").read_text())
    assert 500_000 <= meta["n_frames"] <= 800_000, meta["n_frames"]


def test_invalid_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale"):
        synthetic.generate(tmp_path, scale=0)
    with pytest.raises(ValueError, match="vehicles"):
        synthetic.generate(tmp_path, vehicles=1)
    with pytest.raises(ValueError, match="split"):
        synthetic.generate_captures(splits=["train_99"])


# ----------------------------------------------------------------------------- traffic_stats


def _toy_capture() -> Capture:
    """IDs 1, 2, 3 in strict rotation every 10 ms each; ID 1 carries a 4-bit counter."""
    n = 300
    ids = np.tile(np.array([1, 2, 3], np.int32), n // 3)
    t = 1000.0 + np.arange(n) * (0.010 / 3)
    pay = np.zeros((n, 8), np.uint8)
    pay[:, 7] = 0xAB
    pay[ids == 1, 0] = np.arange(n // 3) % 16
    pay[ids == 2, 1] = np.arange(n // 3) % 7 * 3  # varies, but is no counter
    dlc = np.where(ids == 3, 4, 8).astype(np.uint8)
    pay[ids == 3, 4:] = 0
    return Capture(t, ids, dlc, pay, np.zeros(n, np.uint8))


def test_traffic_stats_on_a_known_capture() -> None:
    s = traffic_stats([_toy_capture()])
    assert (s["n_frames"], s["n_ids"]) == (300, 3)
    assert s["frames_per_s"] == pytest.approx(300.0, rel=0.01)
    assert s["period_hist"]["10"] == 1.0
    assert s["median_rel_jitter"] == pytest.approx(0.0, abs=1e-6)
    assert s["dlc8_share"] == pytest.approx(2 / 3)
    assert s["constant_byte_share"] == pytest.approx((8 - 1 + 8 - 1 + 4) / 20)
    assert s["counter_id_share"] == pytest.approx(1 / 3)
    assert s["nodes_per_window"]["median"] == 3 and s["edges_per_window"]["median"] == 3
    assert s["nodes_per_window"]["n_windows"] == 3


def test_windows_never_cross_captures() -> None:
    a, b = _toy_capture(), _toy_capture()
    b.can_id = b.can_id + 10
    assert traffic_stats([a.slice(0, 150), b.slice(0, 150)])["nodes_per_window"] == {
        "median": 3.0, "p5": 3.0, "p95": 3.0, "n_windows": 2,
    }


def test_real_ranges_cover_the_documented_statistics() -> None:
    assert set(REAL_RANGES) == {
        "n_ids", "frames_per_s", "dlc8_share", "constant_byte_share", "counter_id_share",
        "nodes_per_window", "edges_per_window",
    }


def test_suppress_windows_are_labelled_where_the_silenced_id_misses_a_frame(dataset: Path, manifest: dict) -> None:
    """The documented rule: a window is an attack window when the suppressed ID misses at
    least one expected frame inside it; no frame is labelled, windows are."""
    from canids.data.catalog import DatasetSpec
    from canids.data.suppress import Suppression, missed_frame_times
    from canids.graphs.build import build_graphs
    from canids.graphs.vocab import Vocabulary

    spec = DatasetSpec(name="synthetic", root=dataset)
    files = [f for f in spec.capture_files() if f.split == "test_05_suppress"]
    caps = [spec.read(f) for f in files]
    graphs = build_graphs(caps, Vocabulary(np.zeros(0, np.int64)), 100)
    assert int(graphs.attack_frames.sum()) == 0 and 0 < int(graphs.y.sum()) < len(graphs)
    for k, cap in enumerate(caps):
        entry = next(s for s in manifest["suppress"] if s["path"].endswith(cap.name + ".csv"))
        assert cap.meta["suppressed"]["can_id"] == int(entry["target_id"], 16)
        missed = missed_frame_times(cap.timestamp, cap.can_id, Suppression.from_meta(cap.meta["suppressed"]))
        eps = np.asarray(entry["episodes"])
        assert len(missed) and _inside(missed, eps + [[-0.2, 0.2]]).all()  # expected frames only inside the episodes
        mine = graphs.capture.numpy() == k
        starts, y = graphs.t_start.numpy()[mine], graphs.y.numpy()[mine].astype(bool)
        far = ~_inside(starts, eps + [[-1.0, 1.0]])  # windows well away from every episode
        assert not y[far].any() and y.any()
        assert set(graphs.attack_types[t] for t in graphs.attack_type.numpy()[mine][y]) == {"suppress"}


def test_missed_frames_of_a_silenced_periodic_id() -> None:
    from canids.data.suppress import Suppression, missed_frame_times, window_misses_a_frame

    t = np.arange(0, 10, 0.01)  # a 10 ms ID, silent from 4.000 s to 4.995 s
    keep = ~((t >= 4.0 - 1e-9) & (t < 5.0 - 1e-9))
    ts, ids = t[keep], np.full(keep.sum(), 0x123)
    missed = missed_frame_times(ts, ids, Suppression(0x123, ((4.0, 5.0),)))
    assert len(missed) == 100 and abs(missed[0] - 4.0) < 1e-6 and abs(missed[-1] - 4.99) < 1e-6
    starts, ends = np.array([1.0, 3.9, 4.5, 4.991, 5.2]), np.array([1.5, 3.995, 4.6, 4.999, 5.8])
    assert window_misses_a_frame(starts, ends, missed).tolist() == [False, False, True, False, False]
    assert not len(missed_frame_times(ts, ids, Suppression(0x456, ((4.0, 5.0),))))  # an ID the capture lacks
