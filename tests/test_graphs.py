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
    edges = {(int(ids_of[s]), int(ids_of[d])): c for (s, d), c in zip(w0.edge_index.t().tolist(), w0.edge_attr[:, EDGE_FEATURES.index("count_share")].tolist())}
    assert set(edges) == {(1, 2), (2, 1), (1, 3)}
    w1 = g.batch([1])
    ids_of = w1.node_can_id
    assert {(int(ids_of[s]), int(ids_of[d])) for s, d in w1.edge_index.t().tolist()} == {(3, 2), (2, 1), (1, 2)}
    counts = dict(zip(w1.node_can_id.tolist(), np.expm1(w1.x[:, NODE_FEATURES.index("log_count")].numpy()).round().tolist()))
    assert counts == {1: 1, 2: 2, 3: 1}


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


def test_spoofed_rate_shows_in_interarrival_feature():
    normal = capture([5, 6] * 200, period=0.005)
    vocab = build_vocabulary([normal])
    fast = capture([5, 5, 5, 5, 6] * 40, period=0.001)
    g_norm = build_graphs([normal], vocab, window_size=100)
    g_fast = build_graphs([fast], vocab, window_size=100)
    k = NODE_FEATURES.index("ia_log_ratio_mean")
    assert g_fast.x[:, k].min() < g_norm.x[:, k].min() - 0.1


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
