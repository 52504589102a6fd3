"""Shared fixtures: a tiny pipeline configuration and one real end-to-end run of it.

The tiny run really trains every stage (small synthetic scale, few epochs, small models),
so tests about manifests, metrics and the DAG assert on real outputs, not on mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = str(VENV_BIN / "snakemake")

TINY_CONFIG = {
    "synthetic": {"seed": 0, "scale": 0.05, "vehicles": 2},
    "training": {"seed": 0, "accelerator": "cpu", "optimize_batch_size": False, "batch_size_max_trials": 1},
    "autoencoder": {
        "teacher": {"epochs": 3, "batch_size": 64, "learning_rate": 0.003, "patience": 3, "model": {"hidden": 16, "heads": 2, "layers": 1, "latent": 16, "embed_dim": 8}},
        "student": {"epochs": 3, "batch_size": 64, "learning_rate": 0.003, "patience": 3, "model": {"hidden": 8, "heads": 1, "layers": 1, "latent": 8, "embed_dim": 4}},
    },
    "curriculum": {
        "teacher": {"epochs": 4, "batch_size": 64, "learning_rate": 0.003, "patience": 4, "model": {"hidden": 16, "heads": 2, "layers": 2, "embed_dim": 8}, "curriculum": {"start_fraction": 0.4, "ramp_epochs": 2, "attack_share": 0.3}},
        "student": {"epochs": 4, "batch_size": 64, "learning_rate": 0.003, "patience": 4, "model": {"hidden": 8, "heads": 1, "layers": 1, "embed_dim": 4}, "curriculum": {"start_fraction": 0.4, "ramp_epochs": 2, "attack_share": 0.3}},
    },
    "fusion": {
        "teacher": {"steps": 300, "eval_every": 50, "epsilon_decay_steps": 150, "model": {"hidden": 32, "layers": 2, "n_actions": 11}},
        "student": {"steps": 300, "eval_every": 50, "epsilon_decay_steps": 150, "model": {"hidden": 16, "layers": 1, "n_actions": 11}},
    },
}


def snakemake(args: list[str], workdir: Path, *, env: dict | None = None, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake on the project's workflow from ``workdir``, always under ``timeout -k``."""
    full_env = {k: v for k, v in os.environ.items() if k != "CAN_EXPERIMENT_ROOT"}  # outputs go under workdir unless asked
    full_env.update(PYTHONUNBUFFERED="1", **(env or {}))
    cmd = ["timeout", "-k", "10", str(timeout), SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config_file) -> Path:
    """One real run of the whole default pipeline (synthetic, teacher) at tiny size; returns the work dir."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(["--cores", "2", "--configfile", str(tiny_config_file)], workdir)
    return workdir


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
