"""Self-contained model checkpoints (``model.ckpt``): config + weights + decision parameters.

They hold plain tensors and numbers only, so ``torch.load(weights_only=True)`` reads them
safely, and a deployment needs nothing but this file to rebuild the detector.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from canids.models.dqn import DQNConfig, QNetwork
from canids.models.gat import GATClassifier, GATConfig
from canids.models.vgae import VGAE, VGAEConfig
from canids.util import atomic_save


def parameter_count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def save_checkpoint(path: Path, kind: str, model: nn.Module, **extra) -> None:
    payload = {"kind": kind, "config": model.cfg.to_dict(), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "parameter_count": parameter_count(model), **extra}
    atomic_save(path, lambda tmp: torch.save(payload, tmp))


def _load(path: Path, kind: str) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("kind") != kind:
        raise ValueError(f"{path}: checkpoint holds a '{payload.get('kind')}' model, expected '{kind}'")
    return payload


def load_vgae(path: Path) -> tuple[VGAE, dict]:
    payload = _load(path, "vgae")
    model = VGAE(VGAEConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload


def load_gat(path: Path) -> tuple[GATClassifier, dict]:
    payload = _load(path, "gat")
    model = GATClassifier(GATConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload


def load_dqn(path: Path) -> tuple[QNetwork, dict]:
    payload = _load(path, "dqn")
    model = QNetwork(DQNConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload
