"""Benchmark: generate-only (dry run) of the biggest job spec: "all" datasets x every stage x every variant.

`snakemake -n --configfile SPEC` is how users see what a spec would run; it must stay fast
even for the largest spec. The real datasets need not be present: CAN_DATA_ROOT points at a
temporary fake layout (one tiny CSV per split) because the dry run checks that each dataset's
layout exists and hashes its captures. Each timing is a fresh Snakemake process in a fresh
working directory (nothing built yet, so every job is scheduled). Prints one JSON line.

    python bench/dryrun_all.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("hcrl_ch", "hcrl_sa", "set_01", "set_02", "set_03", "set_04")
SPLITS = ("train_01_attack_free", "train_02_with_attacks", "test_01_known_vehicle_known_attack")
SPEC = {
    "name": "bench_dryrun_all",
    "datasets": "all",
    "training_types": ["autoencoder", "curriculum", "fusion", "evaluation"],
    "variants": ["teacher", "student", "student_kd"],
}


def fake_data_root(root: Path) -> Path:
    for dataset in DATASETS:
        for split in SPLITS:
            (root / dataset / split).mkdir(parents=True, exist_ok=True)
            (root / dataset / split / "capture.csv").write_text("timestamp,arbitration_id,data_field,attack\n0.0,100,00,0\n")
    return root


def dry_run(spec: Path, data_root: Path, workdir: Path) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k != "CAN_EXPERIMENT_ROOT"}
    env["CAN_DATA_ROOT"] = str(data_root)
    cmd = ["timeout", "-k", "10", "120", str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), "-n", "--configfile", str(spec)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"dry run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)\s*$", proc.stdout, re.M)
    return wall, int(total.group(1)) if total else -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data_root = fake_data_root(tmp_path / "data")
        spec = tmp_path / "all.json"
        spec.write_text(json.dumps(SPEC))
        timings, jobs = [], -1
        for i in range(args.runs):
            workdir = tmp_path / f"work{i}"
            workdir.mkdir()
            wall, jobs = dry_run(spec, data_root, workdir)
            timings.append(wall)
    print(json.dumps({
        "benchmark": "dryrun_all",
        "what": "snakemake -n --configfile <spec: datasets all x autoencoder, curriculum, fusion, evaluation x teacher, student, student_kd>, fresh process and working directory",
        "data": f"fake layout of {len(DATASETS)} datasets x {len(SPLITS)} splits, one tiny CSV each",
        "jobs": jobs,
        "wall_s_median": round(statistics.median(timings), 2),
        "wall_s_runs": [round(t, 2) for t in timings],
        "runs": args.runs,
        "cores": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
