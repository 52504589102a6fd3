"""How stages batch windows: inference results do not depend on the batch size, and the
loader hands freed heap memory back as it goes, past a bound."""

from __future__ import annotations

import numpy as np
import torch

from canids.graphs.build import build_graphs
from canids.graphs.features import EDGE_FEATURES, GRAPH_FEATURES, NODE_FEATURES
from canids.graphs.vocab import build_vocabulary
from canids.models.gat import GATClassifier, GATConfig
from canids.models.vgae import VGAE, VGAEConfig
from canids.settings import GATArchitecture, VGAEArchitecture
from canids.stages import loaders
from canids.stages.autoencoder import score_windows
from canids.stages.curriculum import predict_proba
from conftest import periodic_capture


def _graphs():
    cap = periodic_capture(np.random.default_rng(8))
    return build_graphs([cap], build_vocabulary([cap]), window_size=10)


def test_scores_and_probabilities_do_not_depend_on_the_inference_batch():
    """INFERENCE_BATCH was chosen for speed and memory; it must not move a score beyond float32
    rounding (matrix products may block a batch of another size differently)."""
    graphs = _graphs()
    torch.manual_seed(0)
    dims = dict(node_dim=len(NODE_FEATURES), edge_dim=len(EDGE_FEATURES), graph_dim=len(GRAPH_FEATURES), vocab_size=8)
    vgae, gat = VGAE(VGAEConfig.of(VGAEArchitecture(), **dims)), GATClassifier(GATConfig.of(GATArchitecture(), **dims))
    assert len(graphs) > 2 * loaders.INFERENCE_BATCH
    for run in (score_windows, lambda model, g, size: predict_proba(gat, g, size)):
        model = vgae if run is score_windows else gat
        reference = run(model, graphs, len(graphs))  # every window in one batch
        for size in (7, loaders.INFERENCE_BATCH // 8, loaders.INFERENCE_BATCH):
            np.testing.assert_allclose(run(model, graphs, size), reference, rtol=1e-5, err_msg=f"batch of {size}")


def test_the_loader_looks_at_the_heap_every_so_many_windows(monkeypatch):
    calls = []
    monkeypatch.setattr(loaders, "trim_heap", lambda above: calls.append(above))
    monkeypatch.setattr(loaders, "TRIM_EVERY_WINDOWS", 20)
    graphs = _graphs()
    batches = list(loaders.window_loader(graphs, np.arange(100), batch_size=8))
    assert len(batches) == 13 and len(calls) == 100 // 24  # every third batch of 8 crosses 20 windows
    assert set(calls) == {loaders.TRIM_ABOVE_FREE_BYTES}
