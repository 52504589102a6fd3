"""DQN fusion agent: per window, choose how much to trust the GAT versus the VGAE.

Action ``a`` selects a fusion weight ``alpha = a / (n_actions - 1)``; the fused attack score
is ``alpha * p_gat + (1 - alpha) * p_vgae``, and a window is flagged when it reaches 0.5.
That single decision rule (``fused_decision``) is used in training rewards, validation and
evaluation alike; the replaced pipeline used three different ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class DQNConfig:
    state_dim: int
    n_actions: int = 21
    hidden: int = 128
    layers: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


class QNetwork(nn.Module):
    def __init__(self, cfg: DQNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims = [cfg.state_dim] + [cfg.hidden] * cfg.layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], cfg.n_actions))
        self._alphas = torch.linspace(0.0, 1.0, cfg.n_actions)  # not a buffer: derived from cfg

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)

    def alphas(self) -> torch.Tensor:
        return self._alphas


def fused_score(alpha: torch.Tensor, p_gat: torch.Tensor, p_vgae: torch.Tensor) -> torch.Tensor:
    return alpha * p_gat + (1.0 - alpha) * p_vgae


def fused_decision(alpha: torch.Tensor, p_gat: torch.Tensor, p_vgae: torch.Tensor) -> torch.Tensor:
    """The one decision rule: flag a window when the fused score reaches 0.5."""
    return (fused_score(alpha, p_gat, p_vgae) >= 0.5).long()
