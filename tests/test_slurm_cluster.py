"""The SLURM profile (profiles/slurm) against a real one-node SLURM cluster on this host.

The cluster (slurmctld + slurmd + slurmdbd + MariaDB + munge, two fake GPUs) is brought up by
tests/slurm/cluster.sh; the session fixture starts it (idempotent: ~0.3 s when already up, ~3 s
from installed packages, ~20 s more when the Debian packages must be installed first) and leaves
it running for the next session (`bash tests/slurm/cluster.sh stop` stops it).

Needs root on Debian 12. Deselect with `pytest -m "not slurm"`.

Timings measured here (2 cores, gVisor):
- test_cluster_start_is_idempotent ........ ~0.5 s
- test_sbatch_gpu_job_completes ........... ~3-5 s (job ~2.5 s, then sacct catching up)
- test_smoke_workflow_through_profile ..... ~28-30 s (two jobs in sequence, ~12-13 s each through
  the plugin with slurm-init-seconds-before-status-checks: 1; a job that fails is retried twice,
  so a broken run takes ~2 min before it fails)
- test_profile_reads_site_env_vars ........ ~4 s (dry run, no cluster needed)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import workflow_rules

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE_DIR = REPO / "profiles" / "slurm"
SMOKE_SNAKEFILE = REPO / "tests" / "slurm" / "smoke" / "Snakefile"
TERMINAL_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
    "PREEMPTED", "BOOT_FAIL", "DEADLINE",
}
# Site variables read by the profile; cleared in tests so a developer's own site.env does not leak in.
SITE_VARS = (
    "CANIDS_SLURM_PARTITION", "CANIDS_SLURM_GPU_PARTITION", "CANIDS_SLURM_ACCOUNT",
    "CANIDS_SLURM_GPU_MODEL", "CANIDS_SLURM_RUNTIME_SCALE", "CANIDS_SLURM_MEM_SCALE",
)


def _snakemake_bin() -> Path | None:
    """The snakemake of the venv the tests run in (next to sys.executable), else the one on PATH."""
    candidate = Path(sys.executable).parent / "snakemake"
    if candidate.exists():
        return candidate
    found = shutil.which("snakemake")
    return Path(found) if found else None


def _run(cmd: list[str], *, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """Start (or find) the local cluster; yield the variables `cluster.sh env` exports."""
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (tests/slurm/cluster.sh)")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("no SLURM client and no apt-get to install one")
    t0 = time.monotonic()
    proc = _run(["timeout", "-k", "10", "600", "bash", str(CLUSTER_SH), "start"], timeout=620)
    if proc.returncode != 0:
        pytest.fail(
            f"cluster.sh start failed (rc={proc.returncode}) after {time.monotonic() - t0:.1f}s:\n"
            f"{proc.stderr[-6000:]}"
        )
    env_out = _run(["bash", str(CLUSTER_SH), "env"], timeout=30, check=True).stdout
    cluster_env = dict(re.findall(r"^export (\w+)=(.*)$", env_out, flags=re.M))
    assert cluster_env.get("CANIDS_SLURM_PARTITION") and cluster_env.get("CANIDS_SLURM_ACCOUNT")
    yield cluster_env


def _sacct_rows(args: list[str], fields: list[str]) -> list[dict[str, str]]:
    proc = _run(["sacct", "-n", "-X", "-P", "-o", ",".join(fields), *args], timeout=30)
    assert proc.returncode == 0, f"sacct failed: {proc.stderr}"
    rows = []
    for line in proc.stdout.splitlines():
        if line.strip():
            rows.append(dict(zip(fields, line.split("|"))))
    return rows


def _wait_sacct(args, fields, ready, *, timeout: float = 120) -> list[dict[str, str]]:
    """Poll sacct until ready(rows) holds. slurmdbd fills a finished job's record in stages:
    right after the end, Partition/ReqTRES/AllocTRES can still be empty for a second or two."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _sacct_rows(args, fields)
        if rows and ready(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"sacct {args} not ready after {timeout}s: {rows}")
        time.sleep(0.5)


def _settled(row: dict[str, str]) -> bool:
    """A finished job whose accounting record is complete. Seen here right after a job ends:
    State already COMPLETED while ReqMem reads '16?' and Partition/AllocTRES are still empty."""
    return (
        row.get("State") in TERMINAL_STATES
        and bool(row.get("Partition", "x"))
        and bool(row.get("AllocTRES"))
        and re.fullmatch(r"\d+(\.\d+)?[KMGT]", row.get("ReqMem", "1M")) is not None
    )


def _minutes_to_slurm(minutes: int) -> str:
    days, rem = divmod(int(minutes), 24 * 60)
    hhmmss = f"{rem // 60:02d}:{rem % 60:02d}:00"
    return f"{days}-{hhmmss}" if days else hhmmss


def _profile_resources(rule: str, attempt: int = 1) -> dict:
    """Evaluate the profile's resource expressions for `rule` the way Snakemake does
    (default-resources overlaid by set-resources[rule], `attempt` in scope, current os.environ)."""
    import yaml

    cfg = yaml.safe_load((PROFILE_DIR / "config.yaml").read_text())
    raw = dict(cfg["default-resources"])
    raw.update((cfg.get("set-resources") or {}).get(rule, {}))
    return {k: eval(v, {"attempt": attempt}) if isinstance(v, str) else v for k, v in raw.items()}


@pytest.mark.slurm
def test_cluster_start_is_idempotent(slurm_cluster):
    t0 = time.monotonic()
    proc = _run(["timeout", "-k", "5", "60", "bash", str(CLUSTER_SH), "start"], timeout=70)
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "", "cluster.sh start must print to stderr only"
    assert took < 10, f"second start took {took:.1f}s"
    assert _run(["bash", str(CLUSTER_SH), "status"]).returncode == 0
    env_out = _run(["bash", str(CLUSTER_SH), "env"]).stdout
    assert env_out and all(line.startswith("export ") for line in env_out.splitlines())


@pytest.mark.slurm
def test_sbatch_gpu_job_completes(slurm_cluster, tmp_path):
    out = tmp_path / "job-%j.out"
    proc = _run(
        [
            "sbatch", "--parsable",
            "-A", slurm_cluster["CANIDS_SLURM_ACCOUNT"], "-p", slurm_cluster["CANIDS_SLURM_PARTITION"],
            "--gres=gpu:1", "--mem=500", "-c", "1", "-t", "1",
            "-o", str(out), "-D", str(tmp_path),
            "--wrap", 'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-}"',
        ]
    )
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    assert job_id.isdigit(), proc.stdout

    (row,) = _wait_sacct(
        ["-j", job_id],
        ["JobID", "State", "Partition", "AllocTRES", "ReqMem", "AllocCPUS", "Timelimit"],
        lambda rows: _settled(rows[0]),
    )
    assert row["State"] == "COMPLETED", row
    assert "gres/gpu=1" in row["AllocTRES"].split(","), row
    assert row["ReqMem"] == "500M" and row["AllocCPUS"] == "1" and row["Timelimit"] == "00:01:00", row
    # The spec's exact query, too.
    plain = _run(["sacct", "-j", job_id, "-n", "-X", "-o", "State"])
    assert plain.returncode == 0 and plain.stdout.split() == ["COMPLETED"], plain
    text = (tmp_path / f"job-{job_id}.out").read_text()
    assert re.search(r"^CUDA_VISIBLE_DEVICES=\d", text, flags=re.M), text


@pytest.mark.slurm
@pytest.mark.integration
def test_smoke_workflow_through_profile(slurm_cluster, tmp_path, monkeypatch):
    snakemake = _snakemake_bin()
    if snakemake is None:
        pytest.skip("snakemake is not installed in this environment")
    for var in SITE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CANIDS_SLURM_PARTITION", slurm_cluster["CANIDS_SLURM_PARTITION"])
    monkeypatch.setenv("CANIDS_SLURM_ACCOUNT", slurm_cluster["CANIDS_SLURM_ACCOUNT"])
    env = dict(os.environ)
    # Jobs re-run `<venv>/bin/python -m snakemake` inside the allocation (sbatch --export=ALL):
    # the venv must be first on PATH of the submitting Snakemake.
    env["PATH"] = f"{snakemake.parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(snakemake.parent.parent)
    workdir = tmp_path / "run"
    workdir.mkdir()

    t0 = time.monotonic()
    proc = _run(
        [
            "timeout", "-k", "10", "300", str(snakemake),
            "--profile", str(PROFILE_DIR.relative_to(REPO)),
            "-s", str(SMOKE_SNAKEFILE), "--directory", str(workdir),
        ],
        cwd=REPO, env=env, timeout=330,
    )
    took = time.monotonic() - t0
    assert proc.returncode == 0, f"snakemake rc={proc.returncode} after {took:.0f}s:\n{proc.stderr[-8000:]}"

    # The plugin's log dir from the profile, relative to --directory.
    assert (workdir / "slurm_logs" / "rule_preprocess").is_dir()
    assert (workdir / "slurm_logs" / "rule_autoencoder").is_dir()

    # Every job of this run: sacct rows whose WorkDir is the run directory. The plugin puts
    # "rule_<name>" (plus wildcards) in --comment; slurm.conf keeps it (AccountingStoreFlags=job_comment).
    fields = ["JobID", "State", "Comment", "Account", "Partition", "ReqMem", "AllocCPUS",
              "Timelimit", "AllocTRES", "WorkDir"]
    rows = _wait_sacct(
        ["-S", "now-1hours"], fields,
        lambda rows: sum(r["WorkDir"] == str(workdir) for r in rows) >= 2
        and all(_settled(r) for r in rows if r["WorkDir"] == str(workdir)),
        timeout=60,
    )
    ours = [r for r in rows if r["WorkDir"] == str(workdir)]
    by_rule: dict[str, list[dict[str, str]]] = {}
    for r in ours:
        by_rule.setdefault(r["Comment"].split("_wildcards")[0], []).append(r)
    assert sorted(by_rule) == ["rule_autoencoder", "rule_preprocess"], ours

    threads = {name: r["threads"] for name, r in workflow_rules(SMOKE_SNAKEFILE).items()}
    for rule, gpu in (("preprocess", False), ("autoencoder", True)):
        (row,) = by_rule[f"rule_{rule}"]  # exactly one job: no retry happened
        want = _profile_resources(rule)
        assert row["State"] == "COMPLETED", row
        assert row["Account"] == want["slurm_account"] == slurm_cluster["CANIDS_SLURM_ACCOUNT"], row
        assert row["Partition"] == want["slurm_partition"], row
        assert row["ReqMem"] == f"{want['mem_mb']}M", (row, want)
        assert row["AllocCPUS"] == str(threads[rule]), (row, threads)  # a rule's CPUs are its threads
        assert row["Timelimit"] == _minutes_to_slurm(want["runtime"]), (row, want)
        assert ("gres/gpu=1" in row["AllocTRES"].split(",")) is gpu, row
        # What the job itself saw (the smoke rules write it).
        seen = (workdir / f"{rule}.txt").read_text()
        assert f"job={row['JobID']} " in seen and f"cpus={threads[rule]} " in seen, seen
        assert ("gpus=none" in seen) is (not gpu), seen


SITE_CASES = {
    "site values": (
        dict(CANIDS_SLURM_PARTITION="cpu_part", CANIDS_SLURM_GPU_PARTITION="gpu_part",
             CANIDS_SLURM_ACCOUNT="proj42", CANIDS_SLURM_GPU_MODEL="a100",
             CANIDS_SLURM_RUNTIME_SCALE="2", CANIDS_SLURM_MEM_SCALE="0.5"),
        ["slurm_partition=cpu_part", "slurm_account=proj42", "runtime=120", "mem_mb=2000,"],
        ["slurm_partition=gpu_part", "slurm_account=proj42", "gpu=1", "gpu_model=a100",
         "runtime=480", "mem_mb=3000,"],
    ),
    # Exported but empty (as in a copied site.env.example) means "default", not "".
    "empty values": (
        {var: "" for var in SITE_VARS},
        ["slurm_partition=debug", "slurm_account=canids", "runtime=60", "mem_mb=4000,"],
        ["slurm_partition=debug", "slurm_account=canids", "gpu=1", "runtime=240", "mem_mb=6000,"],
    ),
}


@pytest.mark.parametrize("case", sorted(SITE_CASES))
def test_profile_reads_site_env_vars(case, tmp_path):
    """Site values reach the resources (dry run: no cluster needed, ~2.5 s). Guards the trap that
    `os.environ.get(...)` in a profile silently becomes a literal string (no `os` in scope)."""
    snakemake = _snakemake_bin()
    if snakemake is None:
        pytest.skip("snakemake is not installed in this environment")
    site, want_pre, want_ae = SITE_CASES[case]
    env = {k: v for k, v in os.environ.items() if k not in SITE_VARS}
    env.update(site)
    proc = _run(
        [
            "timeout", "-k", "10", "120", str(snakemake), "--profile", str(PROFILE_DIR.relative_to(REPO)),
            "-s", str(SMOKE_SNAKEFILE), "--directory", str(tmp_path), "--dry-run",
        ],
        cwd=REPO, env=env, timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = proc.stdout + proc.stderr
    res = {m[0]: m[1] for m in re.findall(r"rule (\w+):.*?\n\s+resources: ([^\n]*)", text, flags=re.S)}
    assert "gpu=" not in res["preprocess"], res
    for item in want_pre:
        assert item in res["preprocess"], (item, res["preprocess"])
    for item in want_ae:
        assert item in res["autoencoder"], (item, res["autoencoder"])
    assert "os.environ" not in text
