"""Benchmark: what running every rule as a SLURM job costs, per job, on the local test cluster.

Runs the embedded pipeline (synthetic dataset, teacher, the test suite's tiny sizes) twice from
an empty working directory: once with `--cores N` and once with `--profile profiles/slurm`
(one sbatch per rule). Prints ONE JSON line: both wall times, the number of SLURM jobs, the
overhead per job = (slurm - local) / jobs, the sum of the jobs' own run times (sacct Elapsed),
and the cores.

    python bench/slurm_overhead.py [--cores 2]
    python bench/slurm_overhead.py --study 7x6 [--array]     # a 100-job study: 7 seeds x 6 fusion settings

``--study SxG`` runs a study instead (S seeds x G values of fusion.teacher.gamma: 2 + 2S + 2SG
SLURM jobs; 7x6 = 100), ``--array`` submits with the plugin's job arrays
(``--slurm-array-jobs all``; ``--jobs`` is raised to the job count, see profiles/slurm/README.md).

Needs the local cluster (`bash tests/slurm/cluster.sh start`, root; started here if it is not
up) or a real site with profiles/slurm/site.env sourced. Goal: overhead under 20 s per job.
Each Snakemake call runs under `timeout -k`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = str(VENV_BIN / "snakemake")
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"


def tiny_config() -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import TINY_CONFIG  # one definition of "tiny", shared with the tests

    return json.loads(json.dumps(TINY_CONFIG))


def snakemake(workdir: Path, args: list[str], env: dict, timeout: int) -> float:
    cmd = ["timeout", "-k", "10", str(timeout), SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return wall


def ensure_cluster() -> None:
    if subprocess.run(["bash", str(CLUSTER_SH), "status"], capture_output=True).returncode == 0:
        return
    if os.geteuid() != 0:
        raise SystemExit("no usable SLURM cluster (and not root to start the local one with tests/slurm/cluster.sh)")
    subprocess.run(["timeout", "-k", "10", "600", "bash", str(CLUSTER_SH), "start"], check=True)


def sacct_jobs(workdir: Path, expect: int, timeout: float = 60) -> list[dict]:
    fields = ["JobID", "State", "Comment", "Elapsed", "WorkDir"]
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-S", "now-3hours", "-o", ",".join(fields)], capture_output=True, text=True, timeout=30).stdout
        rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]
        rows = [r for r in rows if r["WorkDir"] == str(workdir)]
        if len(rows) >= expect and all(r["State"] == "COMPLETED" for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def seconds(elapsed: str) -> int:
    days, _, hms = elapsed.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def _per_rule_median(rows: list[dict]) -> dict[str, float]:
    import statistics

    by_rule: dict[str, list[int]] = {}
    for r in rows:
        by_rule.setdefault(r["Comment"].split("_wildcards")[0].removeprefix("rule_"), []).append(seconds(r["Elapsed"]))
    return {rule: statistics.median(v) for rule, v in by_rule.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2, help="--cores of the local run (default 2)")
    parser.add_argument("--study", metavar="SxG", help="a study: S seeds x G fusion.teacher.gamma values (7x6 = 100 SLURM jobs)")
    parser.add_argument("--array", action="store_true", help="submit with --slurm-array-jobs all")
    args = parser.parse_args()
    ensure_cluster()
    env = {k: v for k, v in os.environ.items() if k != "CAN_EXPERIMENT_ROOT"}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(VENV_BIN.parent), PYTHONUNBUFFERED="1")
    with tempfile.TemporaryDirectory(prefix="slurm_overhead_") as tmp:
        config = Path(tmp) / "tiny.yaml"
        config.write_text(yaml.safe_dump(tiny_config()))
        configs = [str(config)]
        study = None
        if args.study:
            n_seeds, n_values = (int(x) for x in args.study.lower().split("x"))
            study = {"name": "bench_study", "datasets": ["synthetic"], "variants": ["teacher"], "training_types": ["evaluation"], "seeds": list(range(n_seeds)), "sweep": {"fusion.teacher.gamma": [round(0.2 + 0.1 * i, 2) for i in range(n_values)]}}
            (Path(tmp) / "study.json").write_text(json.dumps(study))
            configs.append(str(Path(tmp) / "study.json"))
        local_dir, slurm_dir = Path(tmp) / "local", Path(tmp) / "slurm"
        local_dir.mkdir()
        slurm_dir.mkdir()
        wall_local = snakemake(local_dir, ["--cores", str(args.cores), "--configfile", *configs], env, timeout=7200)
        n_local = sum(1 for _ in (local_dir / "experiment_runs").rglob("manifest.json")) + 1  # + generate_synthetic
        slurm_args = ["--profile", str(REPO / "profiles" / "slurm")]
        if args.array:
            slurm_args += ["--slurm-array-jobs", "all", "--jobs", str(n_local + 20)]  # every job of the run (+ the study table and target rules)
        wall_slurm = snakemake(slurm_dir, [*slurm_args, "--configfile", *configs], env, timeout=7200)
        rows = sacct_jobs(slurm_dir, n_local)
    jobs = len(rows)
    print(json.dumps({
        "benchmark": "slurm_overhead",
        "what": "embedded pipeline (synthetic, teacher, test-size config): --cores vs --profile profiles/slurm (one sbatch per rule), fresh dirs",
        "study": study and {"seeds": len(study["seeds"]), "sweep": study["sweep"]},
        "array_jobs": args.array,
        "wall_local_s": round(wall_local, 1),
        "wall_slurm_s": round(wall_slurm, 1),
        "jobs": jobs,
        "jobs_completed": sum(r["State"] == "COMPLETED" for r in rows),
        "overhead_per_job_s": round((wall_slurm - wall_local) / max(jobs, 1), 1),
        "slurm_jobs_elapsed_sum_s": sum(seconds(r["Elapsed"]) for r in rows),
        "per_rule_elapsed_s_median": _per_rule_median(rows),
        "goal_overhead_per_job_s": 5 if study else 20,
        "cores": args.cores,
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
