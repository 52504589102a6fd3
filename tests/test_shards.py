"""Sharded graph caches: the same graphs as one in-memory build, pinned shard by shard, refused by name when damaged."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from canids.graphs import shards
from canids.graphs.build import build_graphs
from canids.graphs.graphset import _TENSOR_FIELDS, GraphSet
from canids.graphs.shards import ShardError, load_graphsets, save_graphsets
from canids.graphs.vocab import build_vocabulary
from canids.shape import ATTACK_FREE_SPLIT, TRAIN_SPLITS, VALIDATION, file_name, onboarding_set
from canids.util import sha256_file

SHARD_WINDOWS = 37  # small and odd: shards end inside captures, and captures span shards
CHUNK_FRAMES = 1234  # likewise: captures are built in chunks that end inside windows' shards


def _tensor(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def assert_same_set(got: GraphSet, want: GraphSet, name: str) -> None:
    for field in _TENSOR_FIELDS:
        a, b = _tensor(getattr(got, field)), _tensor(getattr(want, field))
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{name}.{field} differs"
    assert got.capture_names == want.capture_names and got.attack_types == want.attack_types and got.window_size == want.window_size, name


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A small generated dataset and the settings to preprocess it with tiny shards, built in small chunks."""
    from canids.data.synthetic import generate
    from canids.settings import load_settings

    tmp = tmp_path_factory.mktemp("shards")
    data = tmp / "data" / "mini"
    generate(data, seed=0, scale=0.03)
    (data / "generator.json").unlink()
    catalog = tmp / "catalog.yaml"
    catalog.write_text(f"datasets:\n  mini: {{format: ctt, path: {data}}}\n")
    settings = load_settings({"datasets": ["mini"], "variants": ["teacher"], "training_types": ["preprocess"], "catalog": str(catalog), "experiment_root": str(tmp / "runs"), "preprocess": {"shard_windows": SHARD_WINDOWS, "chunk_frames": CHUNK_FRAMES}})
    return tmp, settings


def _preprocess(stage: Path, settings) -> dict:
    from canids.workflow.preprocess import run_preprocess

    return run_preprocess("mini", settings, stage / file_name("preprocess", "train_graphs"), stage / file_name("preprocess", "test_graphs"), stage / "manifest.json")


@pytest.fixture(scope="module")
def preprocessed(mini):
    tmp, settings = mini
    stage = tmp / "runs" / "mini" / "preprocess"
    return stage, _preprocess(stage, settings), settings


def unsharded_build(settings) -> tuple[dict[str, GraphSet], dict[str, GraphSet]]:
    """The graphs as preprocessing built them before sharding and chunks: every capture in memory, one build per set."""
    from canids.data.catalog import load_catalog
    from canids.workflow.preprocess import split_train_val

    catalog = load_catalog(settings.catalog, data_root=settings.data_root, experiment_root=str(settings.root()))
    spec = catalog.get("mini")
    captures: dict[str, list] = {}
    for f in spec.capture_files():
        if f.duplicate_of is None:
            captures.setdefault(f.split, []).append(spec.read(f))
    p = settings.preprocess
    train_parts, val_parts = [], []
    for split in TRAIN_SPLITS:
        for cap in captures.get(split, []):
            tr, va = split_train_val(cap, p.val_fraction)
            train_parts.extend(tr)
            val_parts.append(va)
    vocab = build_vocabulary([c for c in train_parts if c.split == ATTACK_FREE_SPLIT])
    onboarding = {onboarding_set(split): build_graphs([source.read(f) for f in files], vocab, p.window_size, p.stride) for split, (source, files) in catalog.onboarding_files("mini").items()}
    train = {"train": build_graphs(train_parts, vocab, p.window_size, p.stride), VALIDATION: build_graphs(val_parts, vocab, p.window_size, p.stride), **onboarding}
    tests = {split: build_graphs(caps, vocab, p.window_size, p.stride) for split, caps in sorted(captures.items()) if split not in TRAIN_SPLITS}
    return train, tests


def test_sharded_cache_concatenated_equals_the_unsharded_build(preprocessed):
    stage, manifest, settings = preprocessed
    want_train, want_tests = unsharded_build(settings)
    for artifact, want in (("train_graphs", want_train), ("test_graphs", want_tests)):
        got, extra = load_graphsets(stage / file_name("preprocess", artifact), verify=True)
        assert list(got) == list(want)
        for name in want:
            assert_same_set(got[name], want[name], name)
        assert extra["window_size"] == settings.preprocess.window_size
    assert manifest["metrics"]["splits"]["train"] == want_train["train"].summary()
    assert manifest["metrics"]["splits"]["test_01_known_vehicle_known_attack"] == want_tests["test_01_known_vehicle_known_attack"].summary()


def test_every_shard_is_bounded_and_pinned_by_the_manifest(preprocessed):
    stage, manifest, _ = preprocessed
    pinned = {stage / entry["path"]: entry["sha256"] for entry in manifest["artifacts"].values()}
    files = sorted(stage.rglob("*.shard"))
    assert len(files) > 10 and set(files) <= set(pinned)
    for path in files:
        assert pinned[path] == sha256_file(path)
    for artifact in ("train_graphs", "test_graphs"):
        index = json.loads((stage / file_name("preprocess", artifact)).read_text())
        for entry in index["sets"].values():
            assert all(0 < s["windows"] <= SHARD_WINDOWS for s in entry["shards"])
            assert sum(s["windows"] for s in entry["shards"]) == entry["windows"]
    assert manifest["metrics"]["shards"]["train"] == -(-manifest["metrics"]["splits"]["train"]["n_windows"] // SHARD_WINDOWS)


def _copy_stage(stage: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "preprocess"
    shutil.copytree(stage, copy)
    return copy


def test_a_missing_truncated_or_altered_shard_is_refused_naming_it(preprocessed, tmp_path):
    from canids.workflow.manifest import ManifestError, load_manifest

    stage = _copy_stage(preprocessed[0], tmp_path)
    index = stage / file_name("preprocess", "train_graphs")
    shard = sorted((index.parent / "train").glob("*.shard"))[1]
    data = shard.read_bytes()

    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=rf"graph shard {shard}: truncated: {len(data) // 2} bytes, expected {len(data)}"):
        load_graphsets(index)
    with pytest.raises(ManifestError, match=rf"artifact 'train_graphs/train/00001' \({shard}\) does not match its manifest"):
        load_manifest(stage / "manifest.json")

    altered = bytearray(data)
    altered[-1] ^= 0xFF
    shard.write_bytes(bytes(altered))
    with pytest.raises(ShardError, match=rf"graph shard {shard} does not match its index: expected sha256 {hashlib.sha256(data).hexdigest()}"):
        load_graphsets(index, verify=True)
    with pytest.raises(ManifestError, match=rf"artifact 'train_graphs/train/00001' \({shard}\) does not match its manifest: expected sha256 {hashlib.sha256(data).hexdigest()}"):
        load_manifest(stage / "manifest.json")

    shard.unlink()
    with pytest.raises(ShardError, match=rf"graph shard missing: {shard}"):
        load_graphsets(index)
    with pytest.raises(ManifestError, match=rf"artifact 'train_graphs/train/00001' missing: {shard}"):
        load_manifest(stage / "manifest.json")


def test_a_cache_written_before_shards_is_refused_with_what_to_do(tmp_path):
    old = tmp_path / "train.pt"
    torch.save({"sets": {}, "extra": {}}, old)
    with pytest.raises(ShardError, match="not valid JSON"):
        load_graphsets(old)
    (tmp_path / "index.json").write_text(json.dumps({"sets": {}}))
    with pytest.raises(ShardError, match="expected 'canids-graph-shards' version 1 .*rerun preprocessing"):
        load_graphsets(tmp_path / "index.json")


def test_a_full_disk_stops_preprocessing_naming_the_shard_and_leaves_no_shard(mini, tmp_path, monkeypatch):
    """ENOSPC in the middle of the third shard (the write raises as a full disk does): the error
    names the shard being written, and nothing that looks complete is left behind."""
    _, settings = mini
    real, calls = shards._write_record, {"n": 0}

    def full_disk(handle, array):
        calls["n"] += 1
        if calls["n"] == 2 * (len(_TENSOR_FIELDS) + 1) + 5:
            handle.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(handle, array)

    monkeypatch.setattr(shards, "_write_record", full_disk)
    stage = tmp_path / "runs" / "mini" / "preprocess"
    with pytest.raises(OSError) as err:
        _preprocess(stage, settings)
    assert err.value.errno == errno.ENOSPC and "No space left on device" in str(err.value)
    assert str(stage / "graphs" / "train" / "train" / "00002.shard") in str(err.value)
    leftovers = [p for p in stage.rglob("*") if p.is_file()]
    assert leftovers == [] and not (stage / "manifest.json").exists()


def test_file_backed_rows_gather_across_shards_as_the_tensors_do(tmp_path, monkeypatch):
    from canids.data.synthetic import generate_captures

    caps = generate_captures(seed=1, scale=0.02, splits=[TRAIN_SPLITS[1]])
    graphs = build_graphs(caps, build_vocabulary(caps), window_size=50)
    save_graphsets(tmp_path / "index.json", {"train": graphs}, shard_windows=29)
    loaded = load_graphsets(tmp_path / "index.json")[0]["train"]
    assert len(loaded.x.chunks) == -(-len(graphs) // 29)
    monkeypatch.setattr(shards._PROCESS_PAGES, "budget", 1)  # hand the pages back after every gather: the values stay the same
    rng = np.random.default_rng(0)
    for index in (rng.permutation(len(graphs))[:64], np.arange(len(graphs)), np.array([len(graphs) - 1, 0, 28, 29])):
        got, want = loaded.batch(index), graphs.batch(index)
        for key in ("x", "edge_index", "edge_attr", "node_vocab", "node_can_id", "u", "y", "batch", "ptr"):
            assert torch.equal(getattr(got, key), getattr(want, key)), key
    sub = loaded.subset([5, 3])
    assert torch.equal(sub.x, graphs.subset([5, 3]).x)


@pytest.mark.parametrize("id_pool", [[0x10, 0x7FF, 0x3], [0x10, 0x1FFFFFFF, 0x123456]])
def test_vocabulary_ids_are_the_unique_ids_of_normal_frames(id_pool):
    """``build_vocabulary``'s presence table gives ``np.unique``'s IDs (attack frames left
    out), and falls back to it for IDs too wide for a table."""
    from canids.data.frames import Capture

    rng = np.random.default_rng(4)
    n = 500
    ids = rng.choice(np.array(id_pool), n).astype(np.int32)
    label = (ids == id_pool[1]).astype(np.uint8)  # one ID appears in attack frames only
    cap = Capture(timestamp=np.arange(n) * 1e-3, can_id=ids, dlc=np.full(n, 8, np.uint8), payload=np.zeros((n, 8), np.uint8), label=label, name="v", split=ATTACK_FREE_SPLIT)
    got = build_vocabulary([cap, cap]).can_ids
    assert got.dtype == np.int64 and np.array_equal(got, np.unique(ids[label == 0].astype(np.int64)))
    assert id_pool[1] not in got


def test_reading_one_set_hands_back_the_pages_of_every_set_past_the_process_budget(tmp_path, monkeypatch):
    """Evaluation maps eight sets; each keeping its own 256 MB of pages made the peak grow
    with the dataset. The budget is the process's: reads of one set release all of them."""
    from canids.data.synthetic import generate_captures

    caps = generate_captures(seed=1, scale=0.02, splits=[TRAIN_SPLITS[1]])
    graphs = build_graphs(caps, build_vocabulary(caps), window_size=50)
    save_graphsets(tmp_path / "index.json", {"a": graphs, "b": graphs}, shard_windows=29)
    loaded = load_graphsets(tmp_path / "index.json")[0]
    before = shards._PROCESS_PAGES.touched
    loaded["a"].batch(np.arange(10))
    per_batch = shards._PROCESS_PAGES.touched - before  # bytes and pages one batch counts
    assert per_batch > 0
    monkeypatch.setattr(shards._PROCESS_PAGES, "budget", shards._PROCESS_PAGES.touched + int(2.5 * per_batch))
    released: list[Path] = []
    monkeypatch.setattr(shards.Shard, "release", lambda shard: released.append(shard.path))
    loaded["a"].batch(np.arange(10))
    assert released == []  # within the budget: the pages stay
    for _ in range(3):
        loaded["b"].batch(np.arange(10))
    a_shards = {shard.path for shard in loaded["a"].x.pages.shards}
    assert a_shards and a_shards <= set(released)  # b's reads released a's pages too
