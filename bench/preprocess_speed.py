"""Benchmark: preprocessing a real dataset from CSV to graph caches, on ONE core.

Runs the preprocess stage exactly as the workflow does (read every capture, dedup, split,
vocabulary, graphs, atomic cache writes, manifest) in a fresh subprocess pinned to one CPU,
several times, and prints one JSON line with the median throughput and peak memory.

    python bench/preprocess_speed.py [--dataset hcrl_sa] [--runs 3]
Data: $CAN_DATA_ROOT/<dataset>, default ../shared/data/can/<dataset> relative to the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, resource, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.environ["OMP_NUM_THREADS"] = "1"
import torch
torch.set_num_threads(1)
from canids.util import tune_heap
tune_heap()  # as every stage process does (workflow.jobs.run_job)
import yaml
from canids.settings import load_settings
from canids.shape import file_name
from canids.workflow.preprocess import run_preprocess
dataset, data_root, out = sys.argv[1], sys.argv[2], sys.argv[3]
config = yaml.safe_load(open(os.path.join(sys.argv[4], "config", "config.yaml")))
config.update(data_root=data_root, experiment_root=out, catalog=os.path.join(sys.argv[4], "config", "datasets.yaml"))
config = load_settings(config)
t0 = time.perf_counter()
manifest = run_preprocess(dataset, config, os.path.join(out, file_name("preprocess", "train_graphs")), os.path.join(out, file_name("preprocess", "test_graphs")), os.path.join(out, "manifest.json"))
wall = time.perf_counter() - t0
print(json.dumps({"seconds": wall, "frames": manifest["metrics"]["n_frames"], "read_s": manifest["metrics"]["read_s"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "windows": {k: v["n_windows"] for k, v in manifest["metrics"]["splits"].items()}}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="hcrl_sa")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data_root = os.environ.get("CAN_DATA_ROOT") or str((REPO / ".." / "shared" / "data" / "can").resolve())
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as out:
            proc = subprocess.run([sys.executable, "-c", _CHILD, args.dataset, data_root, out, str(REPO)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    frames = runs[0]["frames"]
    rates = [frames / r["seconds"] for r in runs]
    print(json.dumps({
        "benchmark": "preprocess_speed",
        "data": f"{data_root}/{args.dataset}",
        "what": "CSV -> graph caches + manifest (read, dedup, split, vocabulary, graphs, atomic writes), one core",
        "frames": frames,
        "frames_per_s_median": round(statistics.median(rates)),
        "seconds_median": round(statistics.median(r["seconds"] for r in runs), 3),
        "read_s_median": round(statistics.median(r["read_s"] for r in runs), 3),
        "peak_rss_mb_max": round(max(r["peak_rss_mb"] for r in runs), 1),
        "windows": runs[0]["windows"],
        "runs": [{"seconds": round(r["seconds"], 3), "frames_per_s": round(frames / r["seconds"])} for r in runs],
        "cores_used": 1,
        "cores": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
