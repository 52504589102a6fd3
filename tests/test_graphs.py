"""Graph building: nodes are the distinct IDs of a window, edges its consecutive transitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canids.data.frames import Capture
from canids.graphs.build import build_graphs, payload_entropy
from canids.graphs.graphset import EDGE_FEATURES, NODE_FEATURES, GraphSet, load_graphsets, save_graphsets
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
    save_graphsets(tmp_path / "g.pt", {"train": g}, {"k": 1})
    loaded, extra = load_graphsets(tmp_path / "g.pt")
    assert extra == {"k": 1} and torch.equal(loaded["train"].x, g.x) and loaded["train"].capture_names == g.capture_names
