"""Data loaders over a ``GraphSet``: the one way every stage batches its window graphs.

The dataset yields window indices only and the collate function gathers the graphs, so a
loader over a subset (an epoch's curriculum sample, the attack-free windows) copies nothing,
and a seeded generator makes the shuffled order reproducible. The dataset hands over a batch's
indices as one array (``__getitems__``), not one Python int per window.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from canids.graphs.graphset import GraphSet
from canids.util import trim_heap


class _IndexDataset(Dataset):
    def __init__(self, index: np.ndarray) -> None:
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> int:
        return int(self.index[i])

    def __getitems__(self, items: list[int]) -> np.ndarray:
        """A whole batch's window indices at once (what the DataLoader fetches when this exists)."""
        return self.index[np.asarray(items, dtype=np.int64)]


#: Windows per batch where a stage only scores windows (no gradients): 256 took half the time of
#: 1,024 (whose tensors outgrow the caches) with a quarter of the working memory, and gave the
#: same scores, bit for bit, on 8,000 windows (in general up to float32 rounding: a matrix
#: product may block another batch size differently).
INFERENCE_BATCH = 256
#: Windows gathered between two looks at the C heap (``trim_heap``): every 32 batches of 64,
#: every 2 of 1,024.
TRIM_EVERY_WINDOWS = 2048
#: Free heap memory a loader lets its process keep (``trim_heap``'s ``above``): past one
#: training step's working set (the teacher VGAE's and GAT's at batch 128 leave ~100 MB free
#: between steps, which the next step reuses), far below the 450 MB that batches of 1,024 left
#: behind before the loader trimmed.
TRIM_ABOVE_FREE_BYTES = 256 * 2**20


class _Collate:
    """``graphs.batch``, looking at the C heap every ``TRIM_EVERY_WINDOWS`` windows and handing
    its free memory back when it holds more than ``TRIM_ABOVE_FREE_BYTES``
    (``canids.util.trim_heap``): memory a stage's batches freed stays bounded."""

    def __init__(self, graphs: GraphSet) -> None:
        self.graphs, self.windows = graphs, 0

    def __call__(self, index: np.ndarray):
        self.windows += len(index)
        if self.windows >= TRIM_EVERY_WINDOWS:
            trim_heap(TRIM_ABOVE_FREE_BYTES)
            self.windows = 0
        return self.graphs.batch(index)


def window_loader(graphs: GraphSet, index: np.ndarray | None = None, batch_size: int = 64, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader of PyG batches: the dataset yields window indices, the collate gathers them."""
    index = np.arange(len(graphs)) if index is None else index
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(_IndexDataset(index), batch_size=max(1, int(batch_size)), shuffle=shuffle, collate_fn=_Collate(graphs), generator=generator, num_workers=0)
