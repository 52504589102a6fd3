"""GAT window classifier with jumping knowledge.

Node input = the node features, optionally concatenated with a learnt CAN-ID embedding
(``embed_dim`` > 0; index 0 = unknown ID). The embedding ties a model to the vehicles it was
trained on, so it is off by default: every node feature is vehicle-agnostic. GATv2 layers
use the edge features (transition counts and timing). Jumping
knowledge concatenates every layer's output so shallow timing cues and deeper structural
cues both reach the readout; mean+max pooling plus the window-level features feed an MLP.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from canids.models import lean
from canids.settings import GATArchitecture


#: Leaky ReLU, not ELU: on CPU an ELU costs ~20x a (leaky) ReLU (it evaluates exp).
_SLOPE = 0.1


@dataclass
class GATConfig:
    """The input sizes plus the architecture (``canids.settings.GATArchitecture``), flat as checkpoints store it."""

    node_dim: int
    edge_dim: int
    graph_dim: int
    vocab_size: int
    hidden: int
    heads: int
    layers: int
    embed_dim: int
    dropout: float

    @classmethod
    def of(cls, arch: GATArchitecture, *, node_dim: int, edge_dim: int, graph_dim: int, vocab_size: int) -> "GATConfig":
        return cls(node_dim=node_dim, edge_dim=edge_dim, graph_dim=graph_dim, vocab_size=vocab_size, **asdict(arch))

    def to_dict(self) -> dict:
        return asdict(self)


def dropout(h: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout (``F.dropout``'s: each entry kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``), its mask from ``torch.rand``.

    ``F.dropout`` draws its mask with ``bernoulli_``, which torch vectorises (through MKL) on Intel
    CPUs only; elsewhere, AMD's included, it is a serial loop of one generator call per entry: 2.2 ms
    for the 7,600 x 64 node rows of a 256-window batch (one thread), three times per GAT step, a
    seventh of the step. ``torch.rand`` fills the same mask's uniforms in 0.9 ms. The masks come from
    torch's seeded generator as before (a seeded run is reproducible), but they are other draws.
    """
    if not training or p <= 0.0:
        return h
    keep = torch.rand_like(h).ge_(p)  # P(U >= p) = 1 - p for U uniform on [0, 1)
    return h * keep.mul_(1.0 / (1.0 - p))


class GATClassifier(nn.Module):
    def __init__(self, cfg: GATConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim) if cfg.embed_dim > 0 else None
        width = cfg.hidden * cfg.heads
        self.input = nn.Linear(cfg.node_dim + cfg.embed_dim, width)
        self.convs = nn.ModuleList(lean.gatv2_layer(width, cfg.hidden, cfg.heads, cfg.edge_dim) for _ in range(cfg.layers))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(cfg.layers))
        jk_width = width * (cfg.layers + 1)
        self.head = nn.Sequential(
            nn.Linear(2 * jk_width + cfg.graph_dim, width),
            nn.LeakyReLU(_SLOPE),
            nn.Dropout(cfg.dropout),
            nn.Linear(width, 2),
        )

    def forward(self, batch) -> torch.Tensor:
        """Return class logits ``[num_graphs, 2]`` (index 1 = attack)."""
        h = batch.x if self.embed is None else torch.cat([batch.x, self.embed(batch.node_vocab)], dim=-1)
        h = torch.nn.functional.leaky_relu(lean.linear(h, self.input.weight, self.input.bias), _SLOPE)
        layers = [h]
        for conv, norm in zip(self.convs, self.norms):
            msg = lean.attend(conv, h, batch.edge_index, batch.edge_attr, self.training)
            h = norm(h + torch.nn.functional.leaky_relu(msg, _SLOPE))
            h = dropout(h, self.cfg.dropout, self.training)
            layers.append(h)
        jk = torch.cat(layers, dim=-1)
        size = int(batch.num_graphs)
        pooled = torch.cat([lean.mean_pool(jk, batch.batch, size), lean.max_pool(jk, batch.batch, size), batch.u], dim=-1)
        return self.head(pooled)
