"""The NumPy streaming runtime decides as the torch ``Detector`` does, and runs without torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from canids.data.frames import Capture
from canids.data.synthetic import generate_captures
from canids.graphs.build import build_graphs, payload_entropy
from canids.graphs.stream import StreamingGraphBuilder
from canids.graphs.stream_state import payload_entropy_lookup
from canids.graphs.graphset import EDGE_FEATURES, GRAPH_FEATURES, NODE_FEATURES
from conftest import periodic_capture
from canids.graphs.vocab import build_vocabulary
from canids.models.dqn import DQNConfig, QNetwork
from canids.models.gat import GATClassifier, GATConfig
from canids.models.vgae import VGAE, VGAEConfig, window_score
from canids.stages.detector import Detector
from canids.settings import DQNArchitecture, GATArchitecture, VGAEArchitecture
from canids.stages.fusion_rule import STATE_FEATURES, VGAECalibration
from canids.stages.streaming import StreamingDetector, window_arrays
from canids.stages.thresholds import DecisionThresholds

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def captures():
    """A small synthetic capture set: attack-free training traffic and attacked test captures."""
    captures = generate_captures(seed=3, scale=0.03, splits=["train_01_attack_free", "test_01_known_vehicle_known_attack"])
    vocab = build_vocabulary([c for c in captures if c.split == "train_01_attack_free"])
    return [c for c in captures if c.split.startswith("test_01")], vocab


@pytest.fixture(scope="module")
def windows(captures):
    """Real window graphs (attacks included)."""
    tests, vocab = captures
    graphs = build_graphs(tests, vocab, window_size=100)
    assert 0 < int(graphs.y.sum()) < len(graphs)
    return graphs, vocab


def stream_windows(capture, vocab, window_size: int, rng: np.random.Generator) -> list:
    """Push a capture's frames into a ``StreamingGraphBuilder`` in chunks of random size."""
    builder = StreamingGraphBuilder(vocab, window_size)
    out, start = [], 0
    while start < len(capture):
        stop = min(start + int(rng.integers(1, 3 * window_size)), len(capture))
        rows = slice(start, stop)
        out += builder.push(capture.timestamp[rows], capture.can_id[rows], capture.dlc[rows], capture.payload[rows], capture.label[rows])
        start = stop
    return out


@pytest.mark.parametrize("window_size", [100, 37])
def test_streaming_builder_makes_exactly_the_graphs_of_build_graphs(captures, window_size):
    """Frames pushed in arbitrary chunks give bit-identical window graphs, start times and labels."""
    tests, vocab = captures
    rng = np.random.default_rng(window_size)
    streamed = []
    for capture in [*tests, periodic_capture(rng), silences_capture(rng)]:  # the last two have rate violations and overdue IDs
        expected = build_graphs([capture], vocab, window_size=window_size)
        got = stream_windows(capture, vocab, window_size, rng)
        assert len(got) == len(expected) == len(capture) // window_size
        for window, arrays, t_start, y in zip(got, window_arrays(expected, with_vocab=True), expected.t_start.tolist(), expected.y.tolist()):
            for name, a, b in zip(("x", "edge_index", "edge_attr", "u", "node_vocab"), window.arrays(), arrays):
                assert np.array_equal(a, b), f"{capture.name}: {name} differs"
            assert (window.t_start, window.label) == (t_start, y)
        streamed += got
    assert any(w.label for w in streamed) and any(w.x[:, NODE_FEATURES.index("new_id_share")].any() for w in streamed)  # attacks and new IDs were covered
    # ... and so were rate violations and overdue IDs (the per-ID history features)
    assert all(any(w.u[GRAPH_FEATURES.index(name)] > 0 for w in streamed) for name in ("rate_violation_share", "overdue_ids"))


def test_streaming_builder_refuses_ragged_frames(captures):
    tests, vocab = captures
    builder = StreamingGraphBuilder(vocab, 100)
    with pytest.raises(ValueError, match=r"one row per frame; got \[3, 3, 2, 3, 3\]"):
        builder.push(np.zeros(3), np.zeros(3), np.zeros(2), np.zeros((3, 8)))


def hard_capture(seed: int = 0) -> Capture:
    """Traffic that exercises every branch of the features: the warm-up second, periodic IDs
    with DLC changes and repeated or rewritten payloads, a window of 120 distinct IDs, IDs
    back after 6 s of silence, 29-bit IDs (past the builder's ID table), equal and
    slightly decreasing timestamps, DLCs past 8 and bytes past the DLC; and at the end two
    strictly periodic IDs with rolling counters, warming up across windows, then one's
    counter frozen and both sent too fast (stalled rolling bits, broken warm-up periods)."""
    rng = np.random.default_rng(seed)
    periodic = rng.choice(2048, 40, replace=False)
    ids = np.concatenate([rng.choice(periodic, 1500), np.arange(0x100, 0x178), rng.choice(periodic, 400), [0x18FEF100 + i for i in range(40)] * 5, [0x12345, 0x7FF, 0] * 30, rng.choice(periodic, 1000)])
    gaps = rng.exponential(1e-3, len(ids))
    gaps[rng.random(len(ids)) < 0.03] = 0.0
    gaps[rng.random(len(ids)) < 0.01] = -2e-5
    gaps[2200] = 6.0  # every ID is stale after this
    dlc = np.where(rng.random(len(ids)) < 0.9, 8, rng.integers(0, 16, len(ids))).astype(np.uint8)
    payload = np.zeros((len(ids), 8), np.uint8)
    last: dict[int, np.ndarray] = {}
    for i, (can_id, roll) in enumerate(zip(ids.tolist(), rng.random(len(ids)))):
        row = last.get(can_id, rng.integers(0, 256, 8, dtype=np.uint8)).copy()
        if roll < 0.4:
            row[rng.integers(8)] = rng.integers(256)
        elif roll < 0.5:
            row = rng.integers(0, rng.integers(1, 257), 8, dtype=np.uint8)
        payload[i] = last[can_id] = row
    label = (rng.random(len(ids)) < 0.02).astype(np.uint8)
    k = np.arange(600)
    first_id, second_id = sorted(set(range(0x700, 0x780)) - set(periodic.tolist()))[:2]
    rolling_ids = np.where(k % 2 == 0, first_id, second_id)
    rolling_gaps = np.where((k >= 450) & (k < 500), 0.00125, 0.005)
    rolling_payload = rng.integers(0, 256, (600, 8), dtype=np.uint8)
    counter = (k // 2) & 0xF
    counter[(k >= 300) & (k < 400) & (rolling_ids == first_id)] = 7  # frozen
    rolling_payload[:, 1] = 0x50 | counter
    rolling_payload[:, 2:] = 3  # resting signals
    rolling_label = ((k >= 300) & (k < 500)).astype(np.uint8)
    return Capture(
        timestamp=1.7e9 + np.cumsum(np.r_[gaps, rolling_gaps]),
        can_id=np.r_[ids, rolling_ids].astype(np.int32),
        dlc=np.r_[dlc, np.full(600, 8, np.uint8)],
        payload=np.r_[payload, rolling_payload],
        label=np.r_[label, rolling_label],
        name="hard",
    )


@pytest.mark.parametrize("window_size,pushes", [(100, "window"), (100, "frame"), (7, "random"), (2, "random"), (250, "all")])
def test_streaming_builder_matches_build_graphs_on_hard_traffic(captures, window_size, pushes):
    """Bit for bit (dtype and bytes), however the frames arrive: a window at a time, one frame
    at a time, in random chunks, or all at once."""
    _, vocab = captures
    capture = hard_capture()
    expected = build_graphs([capture], vocab, window_size=window_size)
    sizes = {"window": window_size, "frame": 1, "all": len(capture)}
    rng = np.random.default_rng(window_size)
    builder, got, start = StreamingGraphBuilder(vocab, window_size), [], 0
    while start < len(capture):
        rows = slice(start, start + (sizes.get(pushes) or int(rng.integers(1, 3 * window_size))))
        got += builder.push(capture.timestamp[rows], capture.can_id[rows], capture.dlc[rows], capture.payload[rows], capture.label[rows])
        start = rows.stop
    assert len(got) == len(expected) == len(capture) // window_size
    for i, (window, arrays) in enumerate(zip(got, window_arrays(expected, with_vocab=True))):
        for name, a, b in zip(("x", "edge_index", "edge_attr", "u", "node_vocab"), window.arrays(), arrays):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == np.ascontiguousarray(b).tobytes(), f"window {i}: {name} differs"
        assert (window.t_start, window.label) == (expected.t_start[i].item(), expected.y[i].item())
    if window_size == 100:  # the traffic did reach the branches it is for
        assert max(len(w.x) for w in got) >= 100 and any(w.label for w in got)
        new_id, byte_change, stalled = (NODE_FEATURES.index(name) for name in ("new_id_share", "byte_change_share", "stalled_share"))
        assert any(w.x[:, new_id].any() for w in got[12:]) and any((w.x[:, byte_change] == 1).any() for w in got)  # new IDs after the warm-up; DLC changes
        assert any(w.x[:, stalled].any() for w in got) and any(w.u[GRAPH_FEATURES.index("rate_violation_share")] > 0 for w in got[-3:])  # the frozen counter; the fast end


def test_node_sums_of_a_window_and_of_a_capture_are_the_same_bits(captures, monkeypatch):
    """``formulas._node_sums`` sums a live window's frames with one bincount and a capture's
    with a bincount per column and packed integer byte sums: the graphs are the same bits
    either way (with the test above, the streaming builder equals both)."""
    from canids.graphs import formulas

    _, vocab = captures
    capture = hard_capture(seed=1)
    for window_size, stride in [(100, 100), (300, 120), (7, 3)]:
        built = []
        for limit in (10**9, 0):  # every capture through the one-bincount path, then none
            monkeypatch.setattr(formulas, "_ONE_BINCOUNT_MAX_FRAMES", limit)
            built.append(build_graphs([capture], vocab, window_size=window_size, stride=stride))
        for name in ("x", "edge_attr", "u"):
            a, b = (getattr(graphs, name).numpy() for graphs in built)
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), (window_size, name)


def silences_capture(rng: np.random.Generator) -> Capture:
    """30 s of four periodic IDs (10-100 ms, 1 % jitter): one silent for 7 s (overdue, then
    stale, then back), one for 3 s meanwhile and one for 1 s later (overdue, then back); a
    0.3 ms flood of ID 0 for two seconds, and a second of fuzzing (a random ID every ms)."""
    parts = []
    for k, period in enumerate([0.01, 0.02, 0.05, 0.1]):
        t = np.cumsum(period * (1 + 0.01 * rng.standard_normal(int(30 / period))))
        t = t[~((k == 0) & (t > 8) & (t < 15)) & ~((k == 2) & (t > 10) & (t < 13)) & ~((k == 3) & (t > 20) & (t < 21))]
        parts.append((t, np.full(len(t), 0x200 + k)))
    flood = np.r_[np.arange(5, 6, 3e-4), np.arange(18, 19, 3e-4)]
    fuzz = np.arange(25, 26, 1e-3)
    parts += [(flood, np.zeros(len(flood), int)), (fuzz, rng.integers(0, 2048, len(fuzz)))]
    t, can_id = (np.concatenate(columns) for columns in zip(*parts))
    order = np.argsort(t, kind="stable")
    n = len(t)
    payload = rng.integers(0, 256, (n, 8)).astype(np.uint8)
    return Capture(timestamp=t[order], can_id=can_id[order].astype(np.int32), dlc=np.full(n, 8, np.uint8), payload=payload, label=np.zeros(n, np.uint8), name="silences")


@pytest.mark.parametrize("window_size", [100, 7])
def test_overdue_count_is_the_formula_over_every_id(captures, monkeypatch, window_size):
    """``IdHistory.n_overdue`` (a bound that skips ``formulas.overdue`` on most windows, and
    IDs it retired) counts what ``overdue`` over every ID counts, at every window's end: on
    IDs going overdue, stale and back, floods, fuzzing, and times that step back."""
    from canids.graphs.formulas import overdue
    from canids.graphs.stream_state import IdHistory

    _, vocab = captures
    checked, exact, windows, exact_windows = [], [], 0, 0
    fast_path, exact_path = IdHistory.n_overdue, IdHistory._count_overdue

    def n_overdue(history, t_end):
        rows = slice(0, history.n_rows)
        expected = np.count_nonzero(overdue(history.seen[rows], history.regular[rows], history.regular_us[rows], history.last_ts[rows], t_end))
        got = fast_path(history, t_end)
        checked.append((got, expected))
        return got

    monkeypatch.setattr(IdHistory, "n_overdue", n_overdue)
    monkeypatch.setattr(IdHistory, "_count_overdue", lambda history, t_end: exact.append(t_end) or exact_path(history, t_end))
    rng = np.random.default_rng(window_size)
    for capture in (silences_capture(rng), periodic_capture(rng), hard_capture()):
        builder, before = StreamingGraphBuilder(vocab, window_size), len(exact)
        windows += len(builder.push(capture.timestamp, capture.can_id, capture.dlc, capture.payload))
        exact_windows += len(exact) - before
        # After the last frame: every periodic ID late, then stale; then time goes back and forth.
        for t_end in capture.timestamp[-1] + np.r_[np.linspace(0, 7, 30), np.linspace(7, 0, 30), np.linspace(0, 7, 30)]:
            builder._history.n_overdue(float(t_end))
    got, expected = np.array(checked).T
    assert np.array_equal(got, expected)
    assert expected.max() >= 2 and 0 < exact_windows < windows / 2  # overdue IDs were seen; the bound answered most windows


def test_entropy_lookup_is_payload_entropy():
    """The streaming builder's table lookup gives ``payload_entropy``'s float32 bits for every
    DLC (0-255) and any mix of repeated byte values."""
    rng = np.random.default_rng(0)
    dlc = rng.integers(0, 256, 50_000).astype(np.uint8)
    dlc[:20_000] %= 9
    payload = rng.integers(0, rng.integers(1, 257, (len(dlc), 1)), (len(dlc), 8)).astype(np.uint8)
    assert payload_entropy_lookup(payload, dlc).tobytes() == payload_entropy(payload, dlc).tobytes()


def random_detector(graphs, vocab, vgae_kw: dict, gat_kw: dict, seed: int) -> Detector:
    """Untrained models with sharp attention, and a VGAE threshold at the median score, so that
    attention weights, both detectors' probabilities and the policy's choice all vary per window."""
    torch.manual_seed(seed)
    dims = dict(node_dim=len(NODE_FEATURES), edge_dim=len(EDGE_FEATURES), graph_dim=len(GRAPH_FEATURES), vocab_size=vocab.size)
    vgae = VGAE(VGAEConfig.of(dataclasses.replace(VGAEArchitecture(), **vgae_kw), **dims)).eval()
    gat = GATClassifier(GATConfig.of(dataclasses.replace(GATArchitecture(), **gat_kw, dropout=0.0), **dims)).eval()
    policy = QNetwork(DQNConfig.of(DQNArchitecture(hidden=16, layers=2, n_actions=11), state_dim=len(STATE_FEATURES))).eval()
    with torch.no_grad():
        for conv in [*vgae.convs, *gat.convs]:
            conv.att.normal_(0, 3.0)
        batch = graphs.batch(np.arange(len(graphs)))
        scores = window_score(batch, vgae(batch, sample=False), vgae)
        logits = gat(batch)
        gat.head[3].bias[1] -= (logits[:, 1] - logits[:, 0]).median()  # p_gat straddles 0.5
    calibration = VGAECalibration.fit(float(scores.median()), scores.numpy())
    return Detector(vgae, gat, policy, vocab, graphs.window_size, calibration)


def assert_same_decisions(detector: Detector, runtime: StreamingDetector, graphs) -> np.ndarray:
    """Window by window: equal flags; equal fused scores wherever both chose the same fusion weight."""
    flags, same_alpha = [], 0
    for i, window in enumerate(window_arrays(graphs, with_vocab=runtime.uses_vocab)):
        flag, fused, alpha = detector.decide(graphs.batch([i]))
        got = runtime.decide(*window)
        assert got.flag == int(flag), f"window {i}: runtime {got}, detector flag {int(flag)} score {float(fused)}"
        if got.alpha == pytest.approx(float(alpha)):
            same_alpha += 1
            assert got.score == pytest.approx(float(fused), abs=2e-5), f"window {i}"
        flags.append(got.flag)
    # A different weight only on a float-rounding tie between two actions' Q-values.
    assert same_alpha >= 0.98 * len(graphs)
    return np.array(flags)


STUDENT = ({"hidden": 16, "heads": 1, "layers": 1, "latent": 16}, {"hidden": 16, "heads": 1, "layers": 1})
TEACHER = ({"hidden": 32, "heads": 4, "layers": 2, "latent": 48}, {"hidden": 16, "heads": 4, "layers": 3})
EMBEDDING = ({"hidden": 8, "heads": 2, "layers": 2, "latent": 8, "embed_dim": 4, "id_weight": 0.1}, {"hidden": 8, "heads": 2, "layers": 1, "embed_dim": 3})


@pytest.mark.parametrize(
    "vgae_kw,gat_kw",
    [STUDENT, TEACHER, EMBEDDING],
    ids=["student: stacked equal layers", "teacher: padded channels, a GAT-only layer", "ID embeddings + ID reconstruction, a VGAE-only layer"],
)
def test_runtime_decides_as_the_detector(windows, vgae_kw, gat_kw):
    graphs, vocab = windows
    detector = random_detector(graphs, vocab, vgae_kw, gat_kw, seed=len(vgae_kw) + gat_kw["layers"])
    runtime = StreamingDetector.from_detector(detector)
    flags = assert_same_decisions(detector, runtime, graphs)
    assert 0 < flags.sum() < len(flags), "the comparison must cover both decisions"
    assert np.array_equal(runtime.decide_graphs(graphs), detector.detect_graphs(graphs))


def test_runtime_decides_as_the_detector_on_another_vehicles_windows(captures):
    """With the familiarity rule on (``DecisionThresholds.familiar_id_share``), windows whose CAN
    IDs the vocabulary partly lacks are decided by the VGAE alone, by the runtime as by the
    detector; the runtime then needs each node's vocabulary index."""
    from canids.graphs.vocab import Vocabulary, known_id_share

    tests, vocab = captures
    partial = Vocabulary(vocab.can_ids[::2])  # another vehicle shares half the IDs
    graphs = build_graphs(tests, partial, window_size=100)
    known = known_id_share(graphs.node_vocab.numpy(), graphs.node_ptr.numpy())
    share = float(np.median(known))
    assert 0 < (known < share).sum() < len(graphs), "windows on both sides of the share"
    detector = random_detector(graphs, partial, *STUDENT, seed=7)
    detector = dataclasses.replace(detector, thresholds=DecisionThresholds(fusion=0.5, vgae=0.55, gat=0.5, false_alarms_per_hour=10.0, vgae_alone=0.9, familiar_id_share=share))
    runtime = StreamingDetector.from_detector(detector)
    assert runtime.uses_vocab
    flags = assert_same_decisions(detector, runtime, graphs)
    assert 0 < flags.sum() < len(flags)
    x, edge_index, edge_attr, u = next(window_arrays(graphs))
    with pytest.raises(ValueError, match=r"pass node_vocab \[\d+\]"):
        runtime.decide(x, edge_index, edge_attr, u)


def test_node_without_incoming_edges_gets_no_message(windows):
    """PyG gives a node with no incoming edge a zero message; the dense softmax must too."""
    graphs, vocab = windows
    detector = random_detector(graphs, vocab, *STUDENT, seed=5)
    runtime = StreamingDetector.from_detector(detector)
    g = torch.Generator().manual_seed(0)
    for edges in ([[0, 1], [1, 2]], [[1, 2, 2], [2, 1, 3]]):  # node 0 (and 3) receive nothing
        edge_index = torch.tensor(edges)
        window = Data(x=torch.randn(5, len(NODE_FEATURES), generator=g), edge_index=edge_index, edge_attr=torch.randn(edge_index.shape[1], len(EDGE_FEATURES), generator=g), u=torch.randn(1, len(GRAPH_FEATURES), generator=g), node_vocab=torch.zeros(5, dtype=torch.long))
        batch = Batch.from_data_list([window])
        _, fused, _ = detector.decide(batch)
        got = runtime.decide(window.x.numpy(), edge_index.numpy(), window.edge_attr.numpy(), window.u.numpy())
        assert np.isfinite(got.score) and got.score == pytest.approx(float(fused), abs=2e-5)


def test_trained_run_exported_by_the_cli_decides_the_same(tiny_run, tmp_path, capsys):
    """The tiny pipeline's trained teacher (ID embeddings, ID reconstruction, 2-head layers),
    exported with ``canids export-detector`` as a user would."""
    from canids.cli import main
    from canids.graphs.shards import load_graphsets
    from canids.shape import file_name
    from canids.util import sha256_file

    run = tiny_run / "experiment_runs" / "synthetic"
    assert main(["export-detector", str(run / "teacher"), "--out", str(tmp_path / "teacher.npz")]) == 0
    assert sha256_file(tmp_path / "teacher.npz") in capsys.readouterr().out
    runtime = StreamingDetector.load(tmp_path / "teacher.npz")
    assert runtime.meta["sources"] == {stage: sha256_file(run / "teacher" / stage / "model.ckpt") for stage in ("autoencoder", "curriculum", "fusion")}
    detector = Detector.from_run(run / "teacher").eval()
    tests, _ = load_graphsets(run / "preprocess" / file_name("preprocess", "test_graphs"))
    for graphs in tests.values():
        assert_same_decisions(detector, runtime, graphs)

    assert main(["export-detector", str(run), "--out", str(tmp_path / "nothing.npz")]) == 1
    assert f"missing {run / 'autoencoder' / 'model.ckpt'}" in capsys.readouterr().err
    assert not (tmp_path / "nothing.npz").exists()


def test_detect_command_reports_what_the_detector_flags_in_raw_captures(tiny_run, tmp_path, capsys):
    import json

    from canids.cli import main
    from canids.data.readers import read_capture
    from canids.graphs.vocab import Vocabulary

    run = tiny_run / "experiment_runs" / "synthetic"
    capture = sorted((run / "raw" / "test_01_known_vehicle_known_attack").glob("*.csv"))[0]
    assert main(["export-detector", str(run / "teacher"), "--out", str(tmp_path / "teacher.npz")]) == 0
    capsys.readouterr()
    assert main(["detect", str(tmp_path / "teacher.npz"), str(capture), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    detector = Detector.from_run(run / "teacher").eval()
    graphs = build_graphs([read_capture(capture)], Vocabulary(detector.vocab.can_ids), detector.window_size)
    expected = detector.detect_graphs(graphs)
    labels = graphs.y.numpy()
    assert report["windows"] == len(graphs) and report["flagged"] == int(expected.sum())
    assert [a["window"] for a in report["alerts"]] == np.flatnonzero(expected).tolist()
    assert report["attack_windows"] == int(labels.sum()) > 0
    assert (report["caught"], report["false_alarms"]) == (int((expected & labels).sum()), int((expected & (1 - labels)).sum()))
    # windows with too few known IDs are counted: every window of a vehicle the models never saw
    from canids.graphs.vocab import known_id_share

    share = detector.thresholds.familiar_id_share
    assert share == 0.9
    known = known_id_share(graphs.node_vocab.numpy(), graphs.node_ptr.numpy())
    assert report["unfamiliar_windows"] == int((known < share).sum())
    other = sorted((run / "raw" / "test_02_unknown_vehicle_known_attack").glob("*.csv"))[0]
    assert main(["detect", str(tmp_path / "teacher.npz"), str(other), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unfamiliar_windows"] == report["windows"] > 0
    assert main(["detect", str(tmp_path / "teacher.npz"), str(other)]) == 0
    assert f"{report['windows']} of them with under 90% of their CAN IDs known to the models" in capsys.readouterr().out

    assert main(["detect", str(run / "teacher"), str(capture), str(tmp_path / "missing.csv")]) == 1  # a run dir works too
    out = capsys.readouterr()
    assert f"{capture}: {len(graphs)} windows of {detector.window_size} frames, {int(expected.sum())} flagged" in out.out
    assert "missing.csv" in out.err


def test_saved_runtime_runs_without_torch(windows, tmp_path):
    graphs, vocab = windows
    runtime = StreamingDetector.from_detector(random_detector(graphs, vocab, *EMBEDDING, seed=2))
    path = runtime.save(tmp_path / "detector.npz")
    assert not list(tmp_path.glob("*.partial"))
    sample = list(window_arrays(graphs, with_vocab=True))[:40]
    np.savez(tmp_path / "windows.npz", **{f"{k}{i}": a for i, w in enumerate(sample) for k, a in zip("xeuv", (w[0], w[1], w[3], w[4]))}, **{f"a{i}": w[2] for i, w in enumerate(sample)})
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
        "import numpy as np\n"
        "from canids.stages.streaming import StreamingDetector\n"
        f"d = StreamingDetector.load({str(path)!r}); w = np.load({str(tmp_path / 'windows.npz')!r})\n"
        f"print(' '.join(repr(d.decide(w[f'x{{i}}'], w[f'e{{i}}'], w[f'a{{i}}'], w[f'u{{i}}'], w[f'v{{i}}']).score) for i in range({len(sample)})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert [float(s) for s in out.split()] == [runtime.decide(*w).score for w in sample]


def test_raw_frames_to_decisions_without_torch(captures, windows, tmp_path):
    """The whole in-vehicle path, frames -> window graphs -> decisions, in a process without
    torch, decides as the torch ``Detector`` does on the recorded capture."""
    tests, vocab = captures
    graphs, _ = windows
    detector = random_detector(graphs, vocab, *STUDENT, seed=4)
    StreamingDetector.from_detector(detector).save(tmp_path / "detector.npz")
    capture = max(tests, key=lambda c: c.n_attack)
    np.savez(tmp_path / "frames.npz", timestamp=capture.timestamp, can_id=capture.can_id, dlc=capture.dlc, payload=capture.payload)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from canids.graphs.stream import StreamingGraphBuilder\n"
        "from canids.graphs.vocab import Vocabulary\n"
        "from canids.stages.streaming import StreamingDetector\n"
        f"d = StreamingDetector.load({str(tmp_path / 'detector.npz')!r}); f = np.load({str(tmp_path / 'frames.npz')!r})\n"
        "builder = StreamingGraphBuilder(Vocabulary(d.can_ids), d.window_size)\n"
        "flags = []\n"
        "for start in range(0, len(f['timestamp']), 64):  # frames arrive 64 at a time\n"
        "    rows = slice(start, start + 64)\n"
        "    flags += [d.decide(*w.arrays()).flag for w in builder.push(f['timestamp'][rows], f['can_id'][rows], f['dlc'][rows], f['payload'][rows])]\n"
        "print(''.join(map(str, flags)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout.strip()
    expected = detector.detect_frames(capture)
    assert out == "".join(map(str, expected.tolist())) and 0 < expected.sum() < len(expected)


def test_bad_runtime_files_are_refused_with_the_file_named(windows, tmp_path):
    not_a_runtime = tmp_path / "weights.npz"
    np.savez(not_a_runtime, w=np.zeros(3))
    with pytest.raises(ValueError, match=r"weights\.npz: not a streaming detector"):
        StreamingDetector.load(not_a_runtime)
    graphs, vocab = windows
    runtime = StreamingDetector.from_detector(random_detector(graphs, vocab, *EMBEDDING, seed=2))
    runtime.meta["format"] = "canids-streaming-detector/0"
    old = runtime.save(tmp_path / "old.npz")
    with pytest.raises(ValueError, match=r"old\.npz: format 'canids-streaming-detector/0', expected"):
        StreamingDetector.load(old)
    x, edge_index, edge_attr, u = next(window_arrays(graphs))
    with pytest.raises(ValueError, match=r"uses CAN-ID vocabulary indices: pass node_vocab \[\d+\]"):
        runtime.decide(x, edge_index, edge_attr, u)
    with pytest.raises(ValueError, match=rf"expected x \[n, {len(NODE_FEATURES)}\], edge_index \[2, E\], edge_attr \[E, {len(EDGE_FEATURES)}\]"):
        runtime.decide(x[:, :-1], edge_index, edge_attr, u)
    with pytest.raises(ValueError, match=r"window shapes .* edge_index \(\d+, 2\)"):
        runtime.decide(x, edge_index.T, edge_attr, u)


def test_detect_on_a_run_directory_reads_captures_as_its_dataset_catalog_says(tiny_run, tmp_path, capsys):
    """A run directory names its dataset: captures are read with that catalog entry's settings
    (here timestamp_order: sort), without the user repeating --timestamp-order."""
    import yaml

    from canids.cli import main

    run = tiny_run / "experiment_runs" / "synthetic"
    source = sorted((run / "raw" / "test_01_known_vehicle_known_attack").glob("*.csv"))[0]
    lines = source.read_text().splitlines()
    t = [float(line.split(",")[0]) for line in lines[1:4]]
    row = lines[3].split(",")
    row[0] = f"{t[0] + (t[1] - t[0]) / 2:.6f}"  # the third frame stamped slightly before the second
    jittered = tmp_path / "jittered.csv"
    jittered.write_text("\n".join([*lines[:3], ",".join(row), *lines[4:]]) + "\n")
    catalog = yaml.safe_load((REPO / "config" / "datasets.yaml").read_text())
    catalog["datasets"]["synthetic"]["timestamp_order"] = "sort"
    (tmp_path / "datasets.yaml").write_text(yaml.safe_dump(catalog))

    assert main(["detect", str(run / "teacher"), str(jittered)]) == 1  # the real catalog says strict
    assert "timestamp" in capsys.readouterr().err
    assert main(["detect", str(run / "teacher"), str(jittered), "--catalog", str(tmp_path / "datasets.yaml")]) == 0
    out = capsys.readouterr()
    assert "dataset 'synthetic': reading captures as the catalog" in out.err and "timestamp order sort" in out.err
    assert f"{jittered}: " in out.out
    assert main(["detect", str(run / "teacher"), str(jittered), "--catalog", str(tmp_path / "datasets.yaml"), "--timestamp-order", "strict"]) == 1  # the flag wins
