"""The VGAE's negative sampler draws exactly what PyG's and Python's ``random.sample`` draw, from the same seed."""

from __future__ import annotations

import random

import pytest
import torch
from torch_geometric.utils import negative_sampling as pyg_negative_sampling

from canids.models.negatives import negative_sampling, sample_range


@pytest.mark.parametrize("n,k", [(3_600_000, 3500), (57_000_000, 13_000), (20_000, 3000), (16_406, 4000), (5000, 4000), (30, 5), (2**32 - 5, 100), (2**32 + 7, 100)])
def test_sample_range_is_random_sample(n, k):
    """Same picks and the same generator state after (set-based path with repeats, list-based path, draws wider than a word)."""
    random.seed(n + k)
    expected = random.sample(range(n), k)
    after = random.getstate()
    random.seed(n + k)
    assert sample_range(n, k).tolist() == expected
    assert random.getstate() == after


@pytest.mark.parametrize("nodes,edges", [(1886, 3246), (7600, 13_000), (40, 60), (5, 12), (3, 6), (2, 2)])
def test_negative_sampling_is_pygs(nodes, edges):
    """Same negative edges as PyG's sparse sampler (self loops and repeated edges in the input included), same state after."""
    edge_index = torch.randint(0, nodes, (2, edges), generator=torch.Generator().manual_seed(nodes))
    random.seed(7)
    expected = pyg_negative_sampling(edge_index, num_nodes=nodes, num_neg_samples=edges)
    after = random.getstate()
    random.seed(7)
    assert torch.equal(negative_sampling(edge_index, nodes, edges), expected)
    assert random.getstate() == after
