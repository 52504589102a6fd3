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
        "teacher": {"epochs": 3, "batch_size": 64, "learning_rate": 0.003, "patience": 3, "model": {"hidden": 16, "heads": 2, "layers": 1, "latent": 16, "embed_dim": 8, "id_weight": 0.1}},
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


#: Fixtures that run a pipeline (or need the SLURM cluster): a test using one is marked for it.
PIPELINE_FIXTURES = {"tiny_run", "pipeline_run", "prepared_upstream", "study_run"}


@pytest.fixture(scope="session", autouse=True)
def private_tmpdir(tmp_path_factory):
    """Every process a test starts (snakemake, its jobs, SLURM jobs, training scripts) keeps its
    temporary files under this session's pytest directory instead of /tmp: a snakemake killed on
    purpose (the lock and lost-job tests kill -9 it) cannot remove its scratch directory, which
    left an empty /tmp/snakemake* per killed run. pytest removes old sessions' directories itself."""
    scratch = tmp_path_factory.mktemp("tmpdir")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(scratch))
        yield scratch


def pytest_collection_modifyitems(config, items):
    """Mark every test that runs a pipeline as ``integration``, and every SLURM test as ``slurm``,
    so that ``pytest -m "not integration and not slurm"`` is the fast unit suite."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & PIPELINE_FIXTURES or "slurm_cluster" in names:
            item.add_marker(pytest.mark.integration)
        if "slurm_cluster" in names:
            item.add_marker(pytest.mark.slurm)


def snakemake(args: list[str], workdir: Path, *, env: dict | None = None, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake on the project's workflow from ``workdir``, always under ``timeout -k``."""
    full_env = {k: v for k, v in os.environ.items() if k != "CAN_EXPERIMENT_ROOT"}  # outputs go under workdir unless asked
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    cmd = ["timeout", "-k", "10", str(timeout), SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def workflow_rules(snakefile: Path | None = None, workdir: Path | None = None) -> dict[str, dict]:
    """Each rule of a Snakefile as Snakemake itself reads it (no job runs): its ``threads`` and named ``outputs``."""
    import tempfile

    if workdir is None:  # a scratch directory, removed afterwards
        with tempfile.TemporaryDirectory(prefix="canids-rules-") as scratch:
            return workflow_rules(snakefile, Path(scratch))
    snakefile = snakefile or REPO / "workflow" / "Snakefile"
    code = (
        "import json, pathlib\n"
        "from snakemake.api import SnakemakeApi\n"
        "from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings\n"
        "with SnakemakeApi(OutputSettings(quiet=True)) as api:\n"
        f"    wf = api.workflow(ResourceSettings(), ConfigSettings(), snakefile=pathlib.Path({str(snakefile)!r}), workdir=pathlib.Path({str(workdir)!r}))\n"
        "    rules = {r.name: {'threads': r.resources['_cores'].value if '_cores' in r.resources else 1, 'outputs': sorted(r.output._names)} for r in wf._workflow.rules}\n"
        "    print(json.dumps(rules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CAN_EXPERIMENT_ROOT"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


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


@pytest.fixture(scope="session")
def fake_data_root(tmp_path_factory) -> Path:
    """Every real dataset of the catalog as one tiny CSV per training and first test split:
    dry runs only check the layout and hash the files."""
    from canids.shape import TEST_SPLITS, TRAIN_SPLITS

    root = tmp_path_factory.mktemp("data")
    catalog = yaml.safe_load((REPO / "config" / "datasets.yaml").read_text())
    for dataset, entry in catalog["datasets"].items():
        if entry.get("generated"):
            continue
        for split in (*TRAIN_SPLITS, TEST_SPLITS[0]):
            (root / dataset / split).mkdir(parents=True)
            rows = "".join(f"{i / 100:.2f},{100 + i % 7:03x},00,0\n" for i in range(300))  # longer than a default window
            (root / dataset / split / "capture.csv").write_text("timestamp,arbitration_id,data_field,attack\n" + rows)
    return root


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------- the local SLURM cluster (shared)

CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE_DIR = REPO / "profiles" / "slurm"
#: Site variables the profile reads; tests clear them so a developer's own site.env does not leak in.
SLURM_SITE_VARS = (
    "CANIDS_SLURM_PARTITION", "CANIDS_SLURM_GPU_PARTITION", "CANIDS_SLURM_ACCOUNT",
    "CANIDS_SLURM_GPU_MODEL", "CANIDS_SLURM_RUNTIME_SCALE", "CANIDS_SLURM_MEM_SCALE",
)


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """Start (or find) the local cluster (tests/slurm/cluster.sh); the variables `cluster.sh env` exports.

    Same as the fixture of tests/test_slurm_cluster.py (which shadows this one in that module).
    """
    import re
    import shutil
    import time

    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (tests/slurm/cluster.sh)")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("no SLURM client and no apt-get to install one")
    t0 = time.monotonic()
    proc = subprocess.run(["timeout", "-k", "10", "600", "bash", str(CLUSTER_SH), "start"], capture_output=True, text=True, timeout=620)
    if proc.returncode != 0:
        pytest.fail(f"cluster.sh start failed (rc={proc.returncode}) after {time.monotonic() - t0:.1f}s:\n{proc.stderr[-6000:]}")
    env_out = subprocess.run(["bash", str(CLUSTER_SH), "env"], capture_output=True, text=True, timeout=30, check=True).stdout
    cluster_env = dict(re.findall(r"^export (\w+)=(.*)$", env_out, flags=re.M))
    assert cluster_env.get("CANIDS_SLURM_PARTITION") and cluster_env.get("CANIDS_SLURM_ACCOUNT")
    yield cluster_env


def slurm_submit_env(cluster_env: dict[str, str], **extra: str) -> dict[str, str]:
    """Environment for `snakemake --profile profiles/slurm` against the local cluster.

    Jobs re-run `<venv>/bin/python -m snakemake` inside the allocation (sbatch --export=ALL), so
    the venv goes first on PATH; site variables are cleared, then partition and account set.
    """
    env = {k: v for k, v in os.environ.items() if k not in SLURM_SITE_VARS and k != "CAN_EXPERIMENT_ROOT"}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(VENV_BIN.parent),
        PYTHONUNBUFFERED="1",
        CANIDS_SLURM_PARTITION=cluster_env["CANIDS_SLURM_PARTITION"],
        CANIDS_SLURM_ACCOUNT=cluster_env["CANIDS_SLURM_ACCOUNT"],
    )
    env.update(extra)
    return env


def periodic_capture(rng):
    """A ``Capture`` of five periodic IDs (10-50 ms, 1 % jitter) with a counter byte and a slow signal byte;
    one goes silent for a second, one sends at twice its rate for a second."""
    import numpy as np

    from canids.data.frames import Capture

    frames = []
    for k, period in enumerate([0.01, 0.02, 0.02, 0.05, 0.01]):
        t = np.cumsum(period * (1 + 0.01 * rng.standard_normal(int(20 / period))))
        if k == 1:
            t = t[(t < 12) | (t > 13)]  # silenced for a second
        if k == 4:
            t = np.sort(np.r_[t, t[(t > 15) & (t < 16)] + period / 2])  # twice the rate
        payload = np.zeros((len(t), 8), np.uint8)
        payload[:, 0] = np.arange(len(t)) % 16
        payload[:, 1] = 40 + (np.arange(len(t)) // 50) % 5
        frames.append((t, np.full(len(t), 0x100 + k), payload))
    t, can_id, payload = (np.concatenate(parts) for parts in zip(*frames))
    order = np.argsort(t, kind="stable")
    n = len(t)
    return Capture(timestamp=t[order], can_id=can_id[order].astype(np.int32), dlc=np.full(n, 8, np.uint8), payload=payload[order], label=np.zeros(n, np.uint8), name="p", split="train_01_attack_free")
