"""Variational graph autoencoder over window graphs; its reconstruction error is the anomaly score.

The encoder is a GAT; the decoder reconstructs node features, the graph's edges (inner
product of latents) and the window-level features, and optionally (``id_weight`` > 0) each
node's CAN-ID vocabulary index. ID reconstruction only makes sense on the vehicles seen in
training (an unseen vehicle's IDs are all "unknown"), so it is off by default. At inference the
latent MEAN is used, never a sample, so the anomaly score of a window is deterministic
(the pipeline this project replaces sampled at inference and got a different score on
every run).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from canids.graphs.features import GRAPH_FEATURES, VIOLATION_GRAPH_FEATURES
from canids.models import lean
from canids.models.negatives import negative_sampling
from canids.settings import VGAEArchitecture


#: Leaky ReLU, not ELU: on CPU an ELU costs ~20x a (leaky) ReLU (it evaluates exp), and
#: it was the single largest cost of student inference.
_SLOPE = 0.1


@dataclass
class VGAEConfig:
    """The input sizes plus the architecture (``canids.settings.VGAEArchitecture``), flat as checkpoints store it."""

    node_dim: int
    edge_dim: int
    graph_dim: int
    vocab_size: int
    hidden: int
    heads: int
    layers: int
    latent: int
    embed_dim: int
    id_weight: float
    edge_weight: float
    kl_weight: float
    graph_weight: float
    #: The window features (columns of ``u``) it reconstructs and scores; None: all of them
    #: (checkpoints written before ``VIOLATION_GRAPH_FEATURES``).
    window_columns: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # A checkpoint or a JSON file may hand the columns back as a list: one form, so that
        # two configs compare by value.
        if self.window_columns is not None:
            self.window_columns = tuple(int(c) for c in self.window_columns)

    @classmethod
    def of(cls, arch: VGAEArchitecture, *, node_dim: int, edge_dim: int, graph_dim: int, vocab_size: int) -> "VGAEConfig":
        return cls(node_dim=node_dim, edge_dim=edge_dim, graph_dim=graph_dim, vocab_size=vocab_size, window_columns=violation_columns(graph_dim), **asdict(arch))

    @property
    def window_dim(self) -> int:
        """How many window features the graph decoder reconstructs."""
        return self.graph_dim if self.window_columns is None else len(self.window_columns)

    def to_dict(self) -> dict:
        return asdict(self)


class VGAE(nn.Module):
    def __init__(self, cfg: VGAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim) if cfg.embed_dim > 0 else None
        width = cfg.hidden * cfg.heads
        self.input = nn.Linear(cfg.node_dim + cfg.embed_dim, width)
        self.convs = nn.ModuleList(lean.gatv2_layer(width, cfg.hidden, cfg.heads, cfg.edge_dim) for _ in range(cfg.layers))
        self.mu = nn.Linear(width, cfg.latent)
        self.logvar = nn.Linear(width, cfg.latent)
        self.feature_decoder = nn.Sequential(nn.Linear(cfg.latent, width), nn.LeakyReLU(_SLOPE), nn.Linear(width, cfg.node_dim))
        self.id_decoder = nn.Linear(cfg.latent, cfg.vocab_size) if cfg.id_weight > 0 else None
        self.graph_decoder = nn.Sequential(nn.Linear(cfg.latent, width), nn.LeakyReLU(_SLOPE), nn.Linear(width, cfg.window_dim))
        # Typical (median) node and window reconstruction errors of normal traffic, set after
        # training by ``calibrate``; the anomaly score is expressed relative to them.
        self.register_buffer("score_scale", torch.ones(2))

    def encode(self, batch, with_logvar: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = batch.x if self.embed is None else torch.cat([batch.x, self.embed(batch.node_vocab)], dim=-1)
        h = F.leaky_relu(lean.linear(h, self.input.weight, self.input.bias), _SLOPE)
        for conv in self.convs:
            msg = lean.attend(conv, h, batch.edge_index, batch.edge_attr, self.training)
            h = h + F.leaky_relu(msg, _SLOPE)
        return self.mu(h), self.logvar(h).clamp(-10, 10) if with_logvar else None

    def forward(self, batch, sample: bool = True) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(batch, with_logvar=sample or self.training)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        size = int(batch.num_graphs)
        return {
            "mu": mu,
            "logvar": logvar,
            "z": z,
            "x_hat": self.feature_decoder(z),
            "id_logits": self.id_decoder(z) if self.id_decoder is not None else None,
            "u_hat": self.graph_decoder(lean.mean_pool(z, batch.batch, size)),
        }

    def loss(self, batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training loss terms (sampled latent)."""
        feat = F.mse_loss(out["x_hat"], batch.x)
        ident = F.cross_entropy(out["id_logits"], batch.node_vocab) if out["id_logits"] is not None else feat.new_zeros(())
        graph = F.mse_loss(out["u_hat"], window_targets(batch, self.cfg))
        z = out["z"]
        pos = batch.edge_index
        if pos.shape[1] > 0:
            neg = negative_sampling(pos, z.shape[0], pos.shape[1])
            # index_select, not z[index]: the same rows, but its gradient is a scatter-add, while
            # indexing's (index_put with accumulate) runs serially and took 10 % of a 2-thread step.
            pos_logit = (z.index_select(0, pos[0]) * z.index_select(0, pos[1])).sum(-1)
            neg_logit = (z.index_select(0, neg[0]) * z.index_select(0, neg[1])).sum(-1)
            edge = F.binary_cross_entropy_with_logits(torch.cat([pos_logit, neg_logit]), torch.cat([torch.ones_like(pos_logit), torch.zeros_like(neg_logit)]))
        else:
            edge = z.sum() * 0.0
        kl = -0.5 * torch.mean(torch.sum(1 + out["logvar"] - out["mu"] ** 2 - out["logvar"].exp(), dim=-1))
        c = self.cfg
        total = feat + c.id_weight * ident + c.edge_weight * edge + c.kl_weight * kl + c.graph_weight * graph
        return {"loss": total, "feature": feat, "id": ident, "edge": edge, "kl": kl, "graph": graph}

    @torch.no_grad()
    def score(self, batch) -> torch.Tensor:
        """Deterministic per-window anomaly score (latent mean; higher = more anomalous)."""
        out = self.forward(batch, sample=False)
        return window_score(batch, out, self)

    @torch.no_grad()
    def calibrate(self, node_errors: torch.Tensor, window_errors: torch.Tensor) -> None:
        """Store the median errors of normal windows: a score of 1 is then 'typically normal'."""
        self.score_scale.copy_(torch.stack([node_errors.median(), window_errors.median()]).clamp_min(1e-9))


def window_errors(batch, out: dict[str, torch.Tensor], cfg: VGAEConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean node error: features + ID, window-feature error) per window."""
    size = int(batch.num_graphs)
    node_err = ((out["x_hat"] - batch.x) ** 2).mean(-1)
    if out["id_logits"] is not None:
        node_err = node_err + cfg.id_weight * F.cross_entropy(out["id_logits"], batch.node_vocab, reduction="none")
    per_window = lean.mean_pool(node_err.unsqueeze(-1), batch.batch, size).squeeze(-1)
    return per_window, ((out["u_hat"] - window_targets(batch, cfg)) ** 2).mean(-1)


def window_targets(batch, cfg: VGAEConfig) -> torch.Tensor:
    """The window features the VGAE reconstructs (``VGAEConfig.window_columns``) of each window."""
    return batch.u if cfg.window_columns is None else batch.u[:, list(cfg.window_columns)]


def violation_columns(graph_dim: int) -> tuple[int, ...] | None:
    """Columns of ``VIOLATION_GRAPH_FEATURES`` in a ``u`` of ``graph_dim`` columns (None where
    ``u`` is not ``GRAPH_FEATURES``: then every column is a target)."""
    if graph_dim != len(GRAPH_FEATURES):
        return None
    return tuple(GRAPH_FEATURES.index(f) for f in VIOLATION_GRAPH_FEATURES)


def window_score(batch, out: dict[str, torch.Tensor], model: "VGAE") -> torch.Tensor:
    """Anomaly score: product of the node and window errors, each relative to normal traffic.

    The product (a sum of log-ratios) lets either view raise the alarm without one's scale
    drowning the other: averaged over ~35 nodes, one forged ID barely moves the node error,
    while the window-level error sees the timing and rate change directly.
    """
    node_err, win_err = window_errors(batch, out, model.cfg)
    return (node_err / model.score_scale[0]).clamp_min(1e-12) * (win_err / model.score_scale[1]).clamp_min(1e-12)
