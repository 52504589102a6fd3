"""Benchmark: the default pipeline end to end (synthetic dataset, teacher), from nothing.

Each run uses a fresh experiment root, so generation, preprocessing and every training
stage really run. Prints one JSON line: median wall time, per-rule seconds (from the
rules' Snakemake benchmark files) and the fusion F1 per test split.

    python bench/pipeline_time.py [--runs 3] [--variant teacher] [--dataset synthetic]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(dataset: str, variant: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CAN_EXPERIMENT_ROOT": f"{tmp}/runs"}
        target = f"{tmp}/runs/{dataset}/{variant}/evaluation/metrics.json"
        cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--directory", tmp, target, "--cores", "all", "--quiet", "all", *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"pipeline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        rules = {}
        for tsv in Path(f"{tmp}/runs").glob(f"**/benchmarks/**/*.tsv"):
            with open(tsv) as handle:
                rules[tsv.stem] = round(float(next(csv.DictReader(handle, delimiter="\t"))["s"]), 1)
        metrics = json.loads(Path(target).read_text())["splits"]
        return {"wall_s": wall, "rules_s": rules, "metrics": metrics}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--variant", default="teacher")
    parser.add_argument("snakemake_args", nargs="*", help="extra arguments for snakemake (e.g. --config ...)")
    args = parser.parse_args()
    runs = [run_once(args.dataset, args.variant, args.snakemake_args) for _ in range(args.runs)]
    last = runs[-1]["metrics"]
    print(json.dumps({
        "benchmark": "pipeline_time",
        "data": f"{args.dataset} (variant {args.variant})",
        "what": "snakemake --cores all from an empty experiment root: generation/preprocess, all training stages, evaluation",
        "wall_s_median": round(statistics.median(r["wall_s"] for r in runs), 1),
        "wall_s_runs": [round(r["wall_s"], 1) for r in runs],
        "rules_s_last_run": runs[-1]["rules_s"],
        "fusion_f1": {split: None if m["fusion"]["f1"] is None else round(m["fusion"]["f1"], 4) for split, m in last.items()},  # None: no attack window
        "fusion_f1_test_01_runs": [round(r["metrics"].get("test_01_known_vehicle_known_attack", {}).get("fusion", {}).get("f1", float("nan")), 4) for r in runs],
        "fusion_recall_per_attack_type_test_01": {k: round(v["recall"], 4) for k, v in last.get("test_01_known_vehicle_known_attack", {}).get("fusion", {}).get("per_attack_type", {}).items()},
        "cores": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
