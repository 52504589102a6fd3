"""Benchmark: generate-only (dry run) of the biggest job spec: "all" datasets x every stage x every variant.

`snakemake -n --configfile SPEC` is how users see what a spec would run; it must stay fast
even for the largest spec. Two roots:

* empty: CAN_DATA_ROOT points at a temporary fake layout (one small CSV per split) of the six
  automotive datasets; nothing is built, so every job is scheduled;
* populated: every stage of every variant of the real datasets this machine has (CAN_DATA_ROOT,
  e.g. ../shared/data/can) built once with tiny settings (``--populated DIR`` keeps it between
  runs); the dry run then finds every result current, which means it reads every manifest and
  checks every artifact and raw capture against its sha256 (canids.workflow.currency). The first
  dry run hashes everything (``cold``); later ones reuse the remembered digests (``warm``).

* study: the empty case as a study, 5 seeds x a 4-point sweep (a GAT and a fusion setting) of
  every dataset and variant; points that change nothing upstream share results (canids.study).

Each timing is a fresh Snakemake process in a fresh working directory. Prints one JSON line.

    export CAN_DATA_ROOT=../shared/data/can
    python bench/dryrun_all.py [--runs 5] [--populated /tmp/canids-populated-root]
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


#: The study case: 5 seeds x 2 x 2 swept values = 20 points per dataset and variant.
STUDY = {"name": "bench_dryrun_study", "seeds": [0, 1, 2, 3, 4], "sweep": {"curriculum.teacher.learning_rate": [0.001, 0.0003], "fusion.teacher.gamma": [0.2, 0.5]}}
STUDY_TARGET_S = 10.0


#: Tiny training settings for the populated root: every stage built fast, all of it real.
TINY = {
    "training": {"accelerator": "cpu", "optimize_batch_size": False},
    **{stage: {size: {"epochs": 1, "model": {"hidden": 8, "heads": 1, "layers": 1}} for size in ("teacher", "student")} for stage in ("autoencoder", "curriculum")},
    "fusion": {size: {"steps": 40, "eval_every": 20} for size in ("teacher", "student")},
}
REAL = ("hcrl_sa", "set_01", "set_02")


def fake_data_root(root: Path) -> Path:
    for dataset in DATASETS:
        for split in SPLITS:
            (root / dataset / split).mkdir(parents=True, exist_ok=True)
            rows = "".join(f"{i / 100:.2f},{100 + i % 7:03x},00,0\n" for i in range(300))
            (root / dataset / split / "capture.csv").write_text("timestamp,arbitration_id,data_field,attack\n" + rows)
    return root


def snakemake(args: list[str], data_root: Path, workdir: Path, root: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CAN_EXPERIMENT_ROOT"}
    env["CAN_DATA_ROOT"] = str(data_root)
    if root is not None:
        env["CAN_EXPERIMENT_ROOT"] = str(root)
    cmd = ["timeout", "-k", "10", str(timeout), str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def dry_run(spec: Path, data_root: Path, workdir: Path, root: Path | None = None) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = snakemake(["-n", "--configfile", str(spec)], data_root, workdir, root)
    wall = time.perf_counter() - t0
    total = re.search(r"^total\s+(\d+)\s*$", proc.stdout, re.M)
    return wall, int(total.group(1)) if total else 0


def populated(args: argparse.Namespace, tmp_path: Path) -> dict:
    """Dry runs on a root where every stage of the real datasets present is built."""
    data_root = Path(os.environ.get("CAN_DATA_ROOT", ""))
    present = [d for d in REAL if (data_root / d).is_dir()]
    if not present:
        return {"skipped": f"no real dataset under CAN_DATA_ROOT={data_root or '(unset)'}"}
    root = Path(args.populated)
    spec = tmp_path / "populated.json"
    spec.write_text(json.dumps({**SPEC, "name": "bench_dryrun_populated", "datasets": present, **TINY}))
    t0 = time.perf_counter()
    snakemake(["--cores", "all", "--configfile", str(spec)], data_root, tmp_path / "build", root, timeout=7200)
    build_s = time.perf_counter() - t0
    timings = []
    for i in range(args.runs + 1):
        wall, jobs = dry_run(spec, data_root, tmp_path / f"populated{i}", root)
        if jobs:
            raise SystemExit(f"the populated root is not current: the dry run schedules {jobs} jobs")
        timings.append(wall)
    manifests = sum(1 for _ in root.rglob("manifest.json"))
    return {"datasets": present, "manifests_checked": manifests, "build_s": round(build_s, 1), "wall_s_cold": round(timings[0], 2), "wall_s_warm_median": round(statistics.median(timings[1:]), 2), "wall_s_warm_runs": [round(t, 2) for t in timings[1:]]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--populated", default=str(Path(tempfile.gettempdir()) / "canids-populated-root"), help="root of the populated case, built once and kept (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data_root = fake_data_root(tmp_path / "data")
        spec = tmp_path / "all.json"
        spec.write_text(json.dumps(SPEC))
        timings, jobs = [], -1
        for i in range(args.runs):
            wall, jobs = dry_run(spec, data_root, tmp_path / f"work{i}", tmp_path / f"root{i}")
            timings.append(wall)
        study_spec = tmp_path / "study.json"
        study_spec.write_text(json.dumps({**SPEC, **STUDY}))
        study_timings, study_jobs = [], -1
        for i in range(args.runs):
            wall, study_jobs = dry_run(study_spec, data_root, tmp_path / f"study{i}", tmp_path / f"study_root{i}")
            study_timings.append(wall)
        full = populated(args, tmp_path)
    target = 5.0
    study = {"points_per_dataset_and_variant": 20, "seeds": len(STUDY["seeds"]), "sweep": STUDY["sweep"], "jobs": study_jobs, "wall_s_median": round(statistics.median(study_timings), 2), "wall_s_runs": [round(t, 2) for t in study_timings], "target_s": STUDY_TARGET_S, "met": statistics.median(study_timings) < STUDY_TARGET_S}
    print(json.dumps({
        "benchmark": "dryrun_all",
        "what": "snakemake -n --configfile <spec: datasets x autoencoder, curriculum, fusion, evaluation x teacher, student, student_kd>, fresh process and working directory",
        "empty": {"data": f"fake layout of {len(DATASETS)} datasets x {len(SPLITS)} splits", "jobs": jobs, "wall_s_median": round(statistics.median(timings), 2), "wall_s_runs": [round(t, 2) for t in timings]},
        "populated": full,
        "study": study,
        "target_s": target,
        "met": statistics.median(timings) < target and full.get("wall_s_warm_median", 0) < target,
        "runs": args.runs,
        "cores": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
