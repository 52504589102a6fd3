"""The lean kernels compute exactly what PyG's GATv2Conv and global pools compute, in inference and in training."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch_geometric.nn import GATv2Conv, global_max_pool, global_mean_pool

from canids.graphs.graphset import EDGE_FEATURES, GRAPH_FEATURES, NODE_FEATURES
from canids.models import lean
from canids.models.gat import GATClassifier, GATConfig
from canids.models.vgae import VGAE, VGAEConfig, window_score
from canids.settings import GATArchitecture, VGAEArchitecture


def random_graphs(n_graphs: int = 5, seed: int = 0):
    from torch_geometric.data import Batch, Data

    g = torch.Generator().manual_seed(seed)
    graphs = []
    for _ in range(n_graphs):
        n = int(torch.randint(3, 30, (1,), generator=g))
        e = int(torch.randint(n, 3 * n, (1,), generator=g))
        graphs.append(
            Data(
                x=torch.randn(n, len(NODE_FEATURES), generator=g),
                edge_index=torch.randint(0, n, (2, e), generator=g),
                edge_attr=torch.randn(e, len(EDGE_FEATURES), generator=g),
                u=torch.randn(1, len(GRAPH_FEATURES), generator=g),
                node_vocab=torch.zeros(n, dtype=torch.long),
            )
        )
    return Batch.from_data_list(graphs)


@pytest.mark.parametrize("heads,concat", [(1, True), (4, True), (3, False)])
def test_gatv2_matches_pyg(heads, concat):
    torch.manual_seed(heads)
    batch = random_graphs()
    conv = GATv2Conv(len(NODE_FEATURES), 8, heads=heads, concat=concat, edge_dim=len(EDGE_FEATURES), add_self_loops=False).eval()
    with torch.no_grad():
        conv.att.normal_(0, 3.0)  # sharp attention, so the softmax really weighs the edges
        expected = conv(batch.x, batch.edge_index, batch.edge_attr)
        got = lean.gatv2(conv, batch.x, batch.edge_index, batch.edge_attr)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


@pytest.mark.parametrize("n_graphs", [1, 7])
def test_pools_match_pyg(n_graphs):
    batch = random_graphs(n_graphs, seed=1)
    assert torch.allclose(lean.mean_pool(batch.x, batch.batch, n_graphs), global_mean_pool(batch.x, batch.batch, n_graphs), atol=1e-6)
    assert torch.equal(lean.max_pool(batch.x, batch.batch, n_graphs), global_max_pool(batch.x, batch.batch, n_graphs))


def test_training_attention_matches_pyg():
    """With gradients, ``lean.gatv2`` gives PyG's values and PyG's gradients to float rounding (it gathers the
    source rows once, and takes the edge projection's weight gradient in the fast layout)."""
    torch.manual_seed(0)
    batch = random_graphs(12, seed=3)
    conv = GATv2Conv(len(NODE_FEATURES), 8, heads=4, edge_dim=len(EDGE_FEATURES), add_self_loops=False).train()
    with torch.no_grad():
        conv.att.normal_(0, 3.0)
    weights = torch.randn(batch.x.shape[0], 32)

    def run(attention):
        conv.zero_grad()
        x = batch.x.clone().requires_grad_()
        out = attention(x)
        (out * weights).sum().backward()
        return [out.detach(), x.grad, *(p.grad.clone() for p in conv.parameters())]

    pyg = run(lambda x: conv(x, batch.edge_index, batch.edge_attr))
    ours = run(lambda x: lean.attend(conv, x, batch.edge_index, batch.edge_attr, training=True))
    for name, a, b in zip(["out", "x.grad", *(n for n, _ in conv.named_parameters())], pyg, ours):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (name, (a - b).abs().max())


def test_models_give_the_same_outputs_through_both_paths(monkeypatch):
    """Eval mode (lean kernels) equals the models run with PyG's GATv2Conv in training mode, dropout aside."""
    pyg_attend = lambda conv, x, edge_index, edge_attr, training: conv(x, edge_index, edge_attr)  # noqa: E731  (the reference)
    torch.manual_seed(0)
    batch = random_graphs(6, seed=2)
    dims = dict(node_dim=len(NODE_FEATURES), edge_dim=len(EDGE_FEATURES), graph_dim=len(GRAPH_FEATURES), vocab_size=3)
    gat = GATClassifier(GATConfig.of(dataclasses.replace(GATArchitecture(), hidden=8, heads=2, layers=2, dropout=0.0), **dims))
    vgae = VGAE(VGAEConfig.of(dataclasses.replace(VGAEArchitecture(), hidden=8, heads=2, layers=2, latent=6), **dims))
    with torch.no_grad():
        gat.train()
        vgae.train()
        with monkeypatch.context() as patch:
            patch.setattr(lean, "attend", pyg_attend)
            pyg_logits, pyg_score = gat(batch), window_score(batch, vgae(batch, sample=False), vgae)
        gat.eval()
        vgae.eval()
        lean_logits, lean_score = gat(batch), window_score(batch, vgae(batch, sample=False), vgae)
    assert torch.allclose(lean_logits, pyg_logits, atol=1e-5)
    assert torch.allclose(lean_score, pyg_score, rtol=1e-4)


def test_the_vgae_scores_window_violations_not_the_vehicles_schedule():
    """A window's largest-ID share is set by the vehicle's schedule (an unseen vehicle's normal
    windows moved 28x in VGAE score on it alone): the VGAE neither reconstructs nor scores it,
    while a violation feature (fast repeats) still moves the score. Checkpoints written before
    (window_columns None) keep scoring every column."""
    from canids.graphs.features import VIOLATION_GRAPH_FEATURES
    from canids.models.vgae import window_errors

    torch.manual_seed(0)
    cfg = VGAEConfig.of(VGAEArchitecture(), node_dim=len(NODE_FEATURES), edge_dim=len(EDGE_FEATURES), graph_dim=len(GRAPH_FEATURES), vocab_size=3)
    assert [GRAPH_FEATURES[c] for c in cfg.window_columns] == VIOLATION_GRAPH_FEATURES and "max_count_share" not in VIOLATION_GRAPH_FEATURES
    model = VGAE(cfg).eval()
    batch = random_graphs(4, seed=2)
    with torch.no_grad():
        out = model(batch, sample=False)
        before = window_errors(batch, out, cfg)[1]
        batch.u[:, GRAPH_FEATURES.index("max_count_share")] += 0.5
        assert torch.equal(window_errors(batch, out, cfg)[1], before)
        batch.u[:, GRAPH_FEATURES.index("fast_repeat_share")] += 0.5
        assert (window_errors(batch, out, cfg)[1] != before).all()
        old = dataclasses.replace(cfg, window_columns=None)
        assert VGAE(old).graph_decoder[2].out_features == len(GRAPH_FEATURES)


def test_distilling_from_a_teacher_that_scores_other_window_features_is_refused():
    """A student learns to reconstruct what its teacher reconstructs: a teacher whose VGAE scores every
    window feature (a checkpoint from before VIOLATION_GRAPH_FEATURES) cannot teach one that does not.
    Columns read back as a list (checkpoint, JSON) compare equal to the tuple they were written as."""
    import numpy as np

    from canids.stages.autoencoder import VGAEModule
    from canids.stages.trainer import TrainSettings

    cfg = VGAEConfig.of(VGAEArchitecture(), node_dim=len(NODE_FEATURES), edge_dim=len(EDGE_FEATURES), graph_dim=len(GRAPH_FEATURES), vocab_size=3)
    assert VGAEConfig(**{**cfg.to_dict(), "window_columns": list(cfg.window_columns)}) == cfg
    settings = TrainSettings(epochs=1, batch_size=8, learning_rate=1e-3, weight_decay=0.0, patience=1, seed=0, optimize_batch_size=False, batch_size_max_trials=1, accelerator="cpu", monitor="val_score", monitor_mode="min")
    empty = np.zeros(0, np.int64)
    VGAEModule(cfg, None, empty, None, empty, settings, teacher=VGAE(cfg), kd_alpha=0.5)  # the same columns: accepted
    with pytest.raises(ValueError, match="distillation: the teacher VGAE reconstructs window features all"):
        VGAEModule(cfg, None, empty, None, empty, settings, teacher=VGAE(dataclasses.replace(cfg, window_columns=None)), kd_alpha=0.5)


def test_building_the_models_leaves_no_generated_source_in_the_temporary_directory(tmp_path):
    """PyG writes the generated propagate code of a MessagePassing class to temporary .py files it
    never deletes; a process that builds both models (as every training job does) leaves none."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from canids.graphs.graphset import EDGE_FEATURES, GRAPH_FEATURES, NODE_FEATURES\n"
        "from canids.models.gat import GATClassifier, GATConfig\n"
        "from canids.models.vgae import VGAE, VGAEConfig\n"
        "from canids.settings import GATArchitecture, VGAEArchitecture\n"
        "dims = dict(node_dim=len(NODE_FEATURES), edge_dim=len(EDGE_FEATURES), graph_dim=len(GRAPH_FEATURES), vocab_size=5)\n"
        "models = [VGAE(VGAEConfig.of(VGAEArchitecture(), **dims)), GATClassifier(GATConfig.of(GATArchitecture(), **dims)), VGAE(VGAEConfig.of(VGAEArchitecture(), **dims))]\n"
        "print(sorted(n for n in sys.modules if n.startswith('torch_geometric.nn.conv.gatv2_conv_GATv2Conv_')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp_path)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GATv2Conv_propagate" in proc.stdout  # PyG did generate (and load) its modules in that process
    assert sorted(p.name for p in tmp_path.glob("*.py")) == []
