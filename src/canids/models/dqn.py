"""DQN fusion agent: per window, choose how much to trust the GAT versus the VGAE.

Action ``a`` selects a fusion weight ``alpha = a / (n_actions - 1)``; how the weight turns two
detectors' outputs into one decision is the fusion rule (``canids.stages.fusion_rule``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from canids.settings import DQNArchitecture


@dataclass
class DQNConfig:
    """The state size plus the architecture (``canids.settings.DQNArchitecture``), flat as checkpoints store it."""

    state_dim: int
    n_actions: int
    hidden: int
    layers: int

    @classmethod
    def of(cls, arch: DQNArchitecture, *, state_dim: int) -> "DQNConfig":
        return cls(state_dim=state_dim, **asdict(arch))

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
