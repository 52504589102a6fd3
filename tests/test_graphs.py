"""Graph building: nodes are the distinct IDs of a window, edges its consecutive transitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from canids.data.frames import Capture
from conftest import periodic_capture
from canids.graphs import build
from canids.graphs.build import build_graphs, payload_entropy
from canids.graphs.features import GRAPH_FEATURES
from canids.graphs.graphset import EDGE_FEATURES, NODE_FEATURES, GraphSet
from canids.graphs.shards import load_graphsets, save_graphsets
from canids.graphs.vocab import UNKNOWN_INDEX, build_vocabulary


def capture(ids, label=None, name="c", split="train_01_attack_free", period=0.001, payload=None) -> Capture:
    n = len(ids)
    return Capture(
        timestamp=np.arange(n) * period,
        can_id=np.asarray(ids, np.int32),
        dlc=np.full(n, 8, np.uint8),
        payload=np.zeros((n, 8), np.uint8) if payload is None else payload,
        label=np.zeros(n, np.uint8) if label is None else np.asarray(label, np.uint8),
        name=name,
        split=split,
    )


def test_window_nodes_and_edges_match_transitions():
    ids = [1, 2, 1, 3, 3, 2, 1, 2]  # window size 4 -> [1,2,1,3], [3,2,1,2]
    cap = capture(ids)
    vocab = build_vocabulary([cap])
    g = build_graphs([cap], vocab, window_size=4)
    assert len(g) == 2
    w0 = g.batch([0])
    assert sorted(w0.node_can_id.tolist()) == [1, 2, 3]
    ids_of = w0.node_can_id
    edges = {(int(ids_of[s]), int(ids_of[d])): c for (s, d), c in zip(w0.edge_index.t().tolist(), np.expm1(w0.edge_attr[:, EDGE_FEATURES.index("log_count")].numpy()).round().tolist())}
    assert edges == {(1, 2): 1, (2, 1): 1, (1, 3): 1}
    w1 = g.batch([1])
    ids_of = w1.node_can_id
    assert {(int(ids_of[s]), int(ids_of[d])) for s, d in w1.edge_index.t().tolist()} == {(3, 2), (2, 1), (1, 2)}


def test_windows_never_cross_captures_and_partial_windows_dropped():
    a, b = capture([1, 2] * 5, name="a"), capture([3, 4] * 3, name="b")
    g = build_graphs([a, b], build_vocabulary([a]), window_size=4)
    assert len(g) == 2 + 1  # 10 frames -> 2 windows, 6 frames -> 1 window
    assert g.capture.tolist() == [0, 0, 1]
    assert sorted(g.batch([2]).node_can_id.tolist()) == [3, 4]


def test_window_label_is_any_attack_frame_and_stride():
    labels = [0] * 7 + [1] + [0] * 4
    cap = capture(list(range(12)), label=labels)
    g = build_graphs([cap], build_vocabulary([capture([0, 1, 2])]), window_size=4, stride=2)
    assert len(g) == 5  # starts 0,2,4,6,8
    assert g.y.tolist() == [0, 0, 1, 1, 0]


def test_unknown_ids_use_the_unknown_bucket():
    train = capture([1, 2, 3] * 10)
    vocab = build_vocabulary([train])
    g = build_graphs([capture([1, 2, 99, 100] * 5, split="test_02")], vocab, window_size=4)
    w = g.batch([0])
    unknown = w.node_vocab[(w.node_can_id == 99) | (w.node_can_id == 100)]
    assert (unknown == UNKNOWN_INDEX).all() and (w.node_vocab[w.node_can_id == 1] != UNKNOWN_INDEX).all()


def test_vocabulary_ignores_attack_frames():
    cap = capture([1, 2, 0x7FF, 1], label=[0, 0, 1, 0])
    assert build_vocabulary([cap]).can_ids.tolist() == [1, 2]


def test_spoofed_rate_shows_in_interarrival_features():
    normal = capture([5, 6] * 200, period=0.005)
    vocab = build_vocabulary([normal])
    # ID 5 at 5x its normal rate, interleaved with its legitimate frames.
    fast = capture([5, 6] * 100 + [5, 5, 5, 5, 6] * 40, period=0.005)
    fast.timestamp[200:] = fast.timestamp[199] + np.cumsum(np.tile([0.001, 0.001, 0.001, 0.002, 0.005], 40))
    g_norm, g_fast = build_graphs([normal], vocab, window_size=100), build_graphs([fast], vocab, window_size=100)
    k_min, k_jit = NODE_FEATURES.index("log_ia_min"), NODE_FEATURES.index("ia_jitter_max")
    assert g_fast.x[:, k_min].min() < g_norm.x[:, k_min].min() - 0.1
    assert g_fast.x[:, k_jit].max() > g_norm.x[:, k_jit].max() + 0.1


def test_features_do_not_depend_on_which_vehicle_the_ids_belong_to():
    """The same traffic pattern on other IDs (an unseen vehicle) gives the same features."""
    rng = np.random.default_rng(0)
    ids = np.tile([1, 2, 3, 4], 100)
    payload = rng.integers(0, 4, (len(ids), 8)).astype(np.uint8)
    seen = capture(ids, period=0.004, payload=payload)
    unseen = capture(ids + 0x300, period=0.004, payload=payload, split="test_02")
    vocab = build_vocabulary([seen])
    a, b = build_graphs([seen], vocab, window_size=50), build_graphs([unseen], vocab, window_size=50)
    assert (b.node_vocab == UNKNOWN_INDEX).all()
    assert torch.equal(a.x, b.x) and torch.equal(a.u, b.u) and torch.equal(a.edge_attr, b.edge_attr)


def test_new_ids_count_only_after_the_capture_warm_up():
    ids = [1, 2] * 300 + [7] + [1, 2] * 50
    cap = capture(ids, period=0.01)  # 6 s of traffic, then ID 7 appears once
    g = build_graphs([cap], build_vocabulary([cap]), window_size=100)
    k = NODE_FEATURES.index("new_id_share")
    assert g.x[:, k].max() == 1.0
    new_nodes = g.node_can_id[g.x[:, k] > 0]
    assert new_nodes.tolist() == [7]


def test_payload_entropy():
    payload = np.array([[0] * 8, list(range(8)), [1, 1, 2, 2, 0, 0, 0, 0]], np.uint8)
    ent = payload_entropy(payload, np.array([8, 8, 4], np.uint8))
    assert ent.tolist() == pytest.approx([0.0, 3.0, 1.0])


def test_batch_subset_concat_and_save_roundtrip(tmp_path):
    cap = capture(([1, 2, 3, 4] * 3 + [5, 6]) * 20)
    g = build_graphs([cap], build_vocabulary([cap]), window_size=10)
    sub = g.subset([3, 1])
    assert len(sub) == 2
    assert torch.equal(sub.batch([0]).x, g.batch([3]).x)
    assert torch.equal(sub.batch([1]).edge_index, g.batch([1]).edge_index)
    both = GraphSet.concat([g, sub])
    assert len(both) == len(g) + 2 and torch.equal(both.batch([len(g)]).x, g.batch([3]).x)
    save_graphsets(tmp_path / "index.json", {"train": g}, {"k": 1})
    loaded, extra = load_graphsets(tmp_path / "index.json")
    assert extra == {"k": 1} and np.array_equal(loaded["train"].x.numpy(), g.x.numpy()) and loaded["train"].capture_names == g.capture_names


def _random_capture(rng: np.random.Generator, n: int, id_pool: np.ndarray, lowest_byte: int = 0) -> Capture:
    """Frames with repeating payloads, changing DLCs and IDs of any width, as real buses have them."""
    can_id = rng.choice(id_pool, n)
    dlc = rng.choice(np.array([0, 2, 8, 8, 8], np.uint8), n)
    payload = rng.integers(lowest_byte // 85, 4, (n, 8), dtype=np.uint8) * 85  # few distinct values: repeats and ties
    return Capture(timestamp=np.cumsum(rng.exponential(0.002, n)), can_id=can_id.astype(np.int32), dlc=dlc, payload=payload, label=np.zeros(n, np.uint8), name="r", split="train_01_attack_free")


def _reference_node_features(cap: Capture, ff: dict[str, np.ndarray], size: int, stride: int) -> np.ndarray:
    """Per-window, per-ID loops: what the vectorised node features must equal."""
    rows = []
    for start in range(0, len(cap) - size + 1, stride):
        frames = np.arange(start, start + size)
        for can_id in np.unique(cap.can_id[frames]):
            mine = frames[cap.can_id[frames] == can_id]
            log_ia, jitter = ff["log_ia"][mine].astype(np.float64), ff["jitter"][mine].astype(np.float64)
            byte_std = np.mean([np.std(cap.payload[mine, j] / 255.0) for j in range(8)])
            rows.append([log_ia.mean(), log_ia.min(), log_ia.max(), jitter.mean(), jitter.max(), ff["changed"][mine].mean(), ff["byte_change"][mine].mean(), ff["entropy"][mine].mean(), byte_std, ff["new_id"][mine].mean(), ff["stalled"][mine].mean()])
    rows = np.array(rows)
    # the model sees them scaled to about [-1, 1] (canids.graphs.build)
    rows[:, :3] = (rows[:, :3] - build._NEUTRAL_LOG_IA) / (build._LOG_IA_MAX - build._LOG_IA_MIN)
    rows[:, 3:5] /= build._JITTER_CLIP
    rows[:, 7] /= 3.0
    return rows


def _reference_history_violations(cap: Capture) -> tuple[np.ndarray, list[dict]]:
    """(rate_violation, per-frame snapshots of every ID's history) by walking the frames with
    each ID's history in a dict: last time and inter-arrival, frames so far, regular
    transitions (within 22 % of the one before) and their total microseconds, and those among
    its first 16 transitions (its warm-up period)."""
    violation, history, snapshots = np.zeros(len(cap)), {}, []
    for i, can_id in enumerate(cap.can_id.tolist()):
        t = float(cap.timestamp[i])
        h = history.setdefault(can_id, {"last": None, "ia": None, "frames": 0, "regular": 0, "regular_us": 0, "warm": 0, "warm_us": 0})
        frames = h["frames"]
        if frames:
            ia = max(t - h["last"], 1e-5)
            ia_us = int(np.rint(ia * 1e6))
            violation[i] = frames > 16 and 5 * h["warm"] >= 4 * 15 and 100 * ia_us * h["warm"] < 65 * h["warm_us"]
            if h["ia"] is not None and abs(math.log(ia / h["ia"])) < 0.2:
                h["regular"] += 1
                h["regular_us"] += ia_us
                if frames <= 16:
                    h["warm"] += 1
                    h["warm_us"] += ia_us
            h["ia"] = ia
        h.update(last=t, frames=frames + 1)
        snapshots.append({k: (v["frames"], v["regular"], v["regular_us"], v["last"]) for k, v in history.items()})
    return violation, snapshots


def _reference_stalled(cap: Capture) -> np.ndarray:
    """Per frame, whether it left unchanged every bit that changed on each of its ID's first
    32 transitions (a DLC change: no), walking the frames with a dict of per-ID state."""
    stalled, history = np.zeros(len(cap)), {}
    for i, can_id in enumerate(cap.can_id.tolist()):
        word, dlc = int.from_bytes(cap.payload[i].tobytes(), "little"), int(cap.dlc[i])
        h = history.setdefault(can_id, {"frames": 0, "rolling": (1 << 64) - 1})
        if h["frames"]:
            diff = word ^ h["word"]
            if h["frames"] <= 32:
                h["rolling"] &= diff
            else:
                stalled[i] = dlc == h["dlc"] and h["rolling"] != 0 and h["rolling"] & diff == 0
        h.update(frames=h["frames"] + 1, word=word, dlc=dlc)
    return stalled


def _reference_overdue(cap: Capture, snapshots: list[dict], size: int, stride: int) -> np.ndarray:
    """Per window, the periodic IDs (>= 10 frames, 4 in 5 transitions regular) of period >= 2 ms
    silent for 4 periods (the mean regular inter-arrival) but not yet 5 s."""
    out = []
    for start in range(0, len(cap) - size + 1, stride):
        end = start + size - 1
        t_end = float(cap.timestamp[end])
        out.append(sum(f >= 10 and 5 * r >= 4 * (f - 2) and us >= 2000 * r and (t_end - last) * 1e6 * r > 4 * us and t_end - last <= 5 for f, r, us, last in snapshots[end].values()))
    return np.array(out)


def _reference_payload_changes(cap: Capture) -> tuple[np.ndarray, np.ndarray]:
    """(changed, byte_change) by walking the frames with each ID's previous frame in a dict."""
    changed, byte_change, last = np.zeros(len(cap)), np.zeros(len(cap)), {}
    for i, can_id in enumerate(cap.can_id.tolist()):
        if can_id in last:
            payload, dlc = last[can_id]
            changed[i] = float(dlc != cap.dlc[i] or (payload != cap.payload[i]).any())
            used = max(int(cap.dlc[i]), 1)
            byte_change[i] = 1.0 if dlc != cap.dlc[i] else (payload[:used] != cap.payload[i, :used]).sum() / used
        last[can_id] = (cap.payload[i], cap.dlc[i])
    return changed, byte_change


@pytest.mark.parametrize("id_pool", [np.arange(0x100, 0x130), np.array([0x18FEF100, 0x18FEF200, 0x0CF00400, 0x7DF, 0x1FFFFFFF, 5])], ids=["11-bit", "29-bit"])
@pytest.mark.parametrize("size,stride", [(100, 100), (400, 200), (7, 3)])
def test_vectorised_features_equal_frame_by_frame_loops(id_pool, size, stride):
    """The radix sorts, packed byte sums and uint64 payload words compute what the loops say.

    A window of 400 frames lets one ID hold more than 257 of them (the packed byte sums'
    limit), so the wide fallback is held to the same answer."""
    from canids.graphs.build import frame_features, window_graphs

    rng = np.random.default_rng(size)
    pool = id_pool if size != 400 else np.r_[np.repeat(id_pool[0], 30), id_pool[1]]  # one ID holds ~390 of 400 frames
    cap = _random_capture(rng, 5000, pool, lowest_byte=170 if size == 400 else 0)  # ~390 bytes of ~210: sums over 2**16
    vocab = build_vocabulary([cap.slice(0, 2000)])
    ff = frame_features(cap, vocab)
    changed, byte_change = _reference_payload_changes(cap)
    np.testing.assert_array_equal(ff["changed"], changed)
    np.testing.assert_allclose(ff["byte_change"], byte_change, rtol=1e-6)
    np.testing.assert_array_equal(ff["vocab"], vocab.index(cap.can_id))
    np.testing.assert_array_equal(ff["entropy"], np.concatenate([payload_entropy(cap.payload[i : i + 1], cap.dlc[i : i + 1]) for i in range(len(cap))]))
    violation, snapshots = _reference_history_violations(cap)
    np.testing.assert_array_equal(ff["rate_violation"], violation)
    np.testing.assert_array_equal(ff["stalled"], _reference_stalled(cap))
    part = window_graphs(cap, ff, size, stride, 0)
    np.testing.assert_allclose(part["x"], _reference_node_features(cap, ff, size, stride), rtol=1e-5, atol=1e-6)
    windows = np.arange(0, len(cap) - size + 1, stride)[:, None] + np.arange(size)
    np.testing.assert_allclose(part["u"][:, 4], violation[windows].mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(part["u"][:, 5], np.minimum(_reference_overdue(cap, snapshots, size, stride), 4) / 4)
    np.testing.assert_allclose(part["u"][:, 6], ff["stalled"][windows].mean(axis=1), rtol=1e-6)


def test_stable_order_and_factorize_agree_with_numpy():
    from canids.graphs.build import factorize, stable_order

    rng = np.random.default_rng(0)
    for values in (rng.integers(0, 0x800, 50_000), rng.integers(0, 0x1FFFFFFF, 50_000), np.zeros(0, np.int64), rng.integers(-5, 5, 100)):
        np.testing.assert_array_equal(stable_order(values), np.argsort(values, kind="stable"))
    for n in (10, 50_000):  # below and above the hash table's threshold
        keys = rng.integers(0, 300, n).astype(np.uint64) << np.uint64(40)
        first, codes = factorize(keys)
        assert len(first) == len(np.unique(keys))
        np.testing.assert_array_equal(keys[first][codes], keys)  # every key maps to a representative equal to it


def test_mean_over_the_last_axis_is_numpys_mean_bit_for_bit():
    """The window and node means divide by the count in the values' dtype, where np.mean
    divides float32 sums by an intp count in float64: the same bits, on values spanning
    every magnitude the features take and on every count a window can have."""
    from canids.graphs.formulas import _mean_last_axis

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for n in (1, 3, 8, 100, 1000, 4096, 100_000):
            values = (rng.standard_normal((max(1, 400_000 // n), n)) * 10.0 ** rng.uniform(-8, 8, (1, n))).astype(dtype)
            mine, numpys = _mean_last_axis(values), values.mean(axis=-1)
            assert mine.dtype == numpys.dtype == dtype
            np.testing.assert_array_equal(mine.view(np.uint8), numpys.view(np.uint8))
        stacked = rng.random((7, 5, 100)).astype(dtype)  # graph_features' [windows, columns, frames]
        np.testing.assert_array_equal(_mean_last_axis(stacked), stacked.mean(axis=-1))


@pytest.mark.parametrize("size,stride", [(100, 100), (64, 16)])
def test_history_violations_equal_frame_by_frame_loops(size, stride):
    """Rate violations, stalled counters and overdue IDs are what walking the frames with a
    dict of per-ID histories says, and each occurs where, and only where, the traffic breaks
    its own habits."""
    from canids.graphs.build import frame_features, window_graphs

    cap = periodic_capture(np.random.default_rng(3))
    frozen = (cap.can_id == 0x102) & (cap.timestamp > 17) & (cap.timestamp < 18)
    cap.payload[frozen, 0] = 9  # its counter stops for a second
    ff = frame_features(cap, build_vocabulary([cap]))
    violation, snapshots = _reference_history_violations(cap)
    np.testing.assert_array_equal(ff["rate_violation"], violation)
    np.testing.assert_array_equal(ff["stalled"], _reference_stalled(cap))
    assert ff["stalled"][frozen][1:].all() and not ff["stalled"][~frozen].any()  # (the first frozen frame may count on)
    part = window_graphs(cap, ff, size, stride, 0)
    overdue = _reference_overdue(cap, snapshots, size, stride)
    np.testing.assert_array_equal(part["u"][:, 5], np.minimum(overdue, 4) / 4)
    t = cap.timestamp
    assert violation[(t > 15) & (t < 16)].sum() > 50 and violation[(t < 15) | (t > 16.1)].sum() == 0
    window_end = t[np.arange(size - 1, len(cap), stride)]
    assert overdue[(window_end > 12.3) & (window_end < 13)].all() and not overdue[(window_end < 11.9) | (window_end > 13.05)].any()


_GRAPH_FIELDS = ("x", "node_vocab", "node_can_id", "edge_index", "edge_attr", "node_ptr", "edge_ptr", "u", "y", "attack_frames", "capture", "attack_type", "t_start")


def _suppressed_periodic_capture() -> Capture:
    """The periodic capture, its silenced ID's second recorded as a suppression episode."""
    from canids.data.suppress import Suppression

    cap = periodic_capture(np.random.default_rng(5))
    cap.meta["suppressed"] = Suppression(0x101, ((12.0, 13.0),)).to_meta()
    return cap


@pytest.mark.parametrize("stride", [None, 37, 150])
@pytest.mark.parametrize("chunk_frames", [2, 333, 5000])
def test_building_a_capture_in_chunks_gives_the_same_graphs(stride, chunk_frames):
    """Preprocessing builds ``chunk_frames`` frames at a time from the per-ID history; every
    window, its overdue IDs and rate violations (which look back across chunks), and the
    suppression labels (from the whole capture) must be the graphs of the whole capture."""
    rng = np.random.default_rng(11)
    big_ids = np.array([0x10, 0x7FF, 0x1FFFFFFF, 0x123456], np.int64)  # extended IDs take the history's slow path
    caps = [_suppressed_periodic_capture(), _random_capture(rng, 3000, big_ids)]
    vocab = build_vocabulary(caps)
    whole = build_graphs(caps, vocab, window_size=100, stride=stride)
    chunked = build_graphs(caps, vocab, window_size=100, stride=stride, chunk_frames=chunk_frames)
    for field in _GRAPH_FIELDS:
        assert np.array_equal(getattr(chunked, field).numpy(), getattr(whole, field).numpy()), field
    u = whole.u.numpy()
    history_features = [GRAPH_FEATURES.index(name) for name in ("rate_violation_share", "overdue_ids")]
    assert (u[:, history_features] > 0).any(axis=0).all()  # both fire somewhere
    assert whole.y.numpy().any()  # the suppression episode labels windows


def test_capture_graph_chunks_continue_one_capture_in_a_shard_writer(tmp_path):
    """The pieces of one capture go to a writer as one capture; a piece of another capture
    cannot pretend to continue it."""
    from canids.graphs.build import capture_graph_chunks
    from canids.graphs.shards import ShardWriter, write_index

    cap = periodic_capture(np.random.default_rng(2))
    vocab = build_vocabulary([cap])
    writer = ShardWriter(tmp_path, "train", 7, 100)
    pieces = list(capture_graph_chunks(cap, vocab, 100, None, 1000))
    assert len(pieces) > 3
    for k, piece in enumerate(pieces):
        writer.add(piece, same_capture=k > 0)
    write_index(tmp_path / "index.json", {"train": writer.close()}, {})
    loaded = load_graphsets(tmp_path / "index.json")[0]["train"]
    whole = build_graphs([cap], vocab, 100)
    assert loaded.capture_names == whole.capture_names == ["train_01_attack_free/p"]
    for field in _GRAPH_FIELDS:
        assert np.array_equal(getattr(loaded, field).numpy(), getattr(whole, field).numpy()), field
    other = capture([1, 2, 3] * 50, name="q")
    with pytest.raises(ValueError, match="continuing capture.*train_01_attack_free/p"):
        writer.add(build_graphs([other], vocab, 100), same_capture=True)
