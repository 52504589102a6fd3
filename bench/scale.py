"""Benchmark: the teacher pipeline at scale, with bounded memory in every rule.

Generates a synthetic dataset of about ``--frames`` frames with the project's generator (the
``generate_synthetic`` rule: on disk, capture by capture), then runs preprocess -> autoencoder
-> curriculum -> fusion -> onboarding -> evaluation through Snakemake from an empty experiment
root, with small epoch counts (a config file layered over config/config.yaml; the models keep
their teacher size). Prints one JSON line: the frames generated, the total wall time, and per
rule the wall time and peak resident memory that Snakemake's ``benchmark:`` files record
and the exact peak (``ru_maxrss``) each job writes at the end of its log (Snakemake samples memory
every 0.5 s, then every 30 s, and can miss a peak), with whether every rule stayed under
``--max-rss-mb``.

    python bench/scale.py [--frames 50000000] [--workdir DIR] [--cores 2]
    python bench/scale.py --frames 300000 --dry-run     # plan only: the config and the jobs

The synthetic ``scale`` is chosen from the vehicles' frame rates and the capture plan
(``scale_for``); the frames actually generated are read from ``generator.json``.
Exit status 1 when a rule's peak memory exceeds ``--max-rss-mb``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from canids.shape import Layout  # noqa: E402
from canids.workflow.logs import PEAK_MEMORY  # noqa: E402

DATASET, VARIANT = "synthetic", "teacher"
#: Rules in the order they run; each writes a benchmark file (canids.shape.Layout.benchmark).
RULES = ("generate_synthetic", "preprocess", "autoencoder", "curriculum", "fusion", "onboarding", "evaluation")


def legit_frames(scale: float, seed: int = 0, vehicles: int = 2) -> float:
    """Legitimate frames the generator writes at ``scale`` (the duplicate capture included; attacks
    add a few percent), from the capture plan and each vehicle's message periods."""
    from canids.data.synthetic import capture_plans, make_fleet

    fleet = {v.name: v for v in make_fleet(seed, vehicles)}
    return sum(plan.seconds * fleet[plan.vehicle].frames_per_s for plan in capture_plans(scale, list(fleet)))


def scale_for(frames: int) -> float:
    """The synthetic ``scale`` that gives about ``frames`` legitimate frames (captures have a
    floor on their duration, so frames are not proportional to small scales)."""
    scale = frames / legit_frames(1.0)
    for _ in range(8):
        scale *= frames / legit_frames(scale)
    return round(scale, 4)


def bench_config(frames: int, epochs: int, fusion_steps: int) -> dict:
    """The config layer: the dataset's size, and training shortened (not shrunk) for the benchmark."""
    scale = scale_for(frames)
    short = {"epochs": epochs, "patience": epochs}
    return {
        "datasets": [DATASET],
        "variants": [VARIANT],
        "training_types": ["evaluation"],
        "synthetic": {"seed": 0, "scale": scale, "vehicles": 2},
        "training": {"seed": 0, "accelerator": "cpu", "optimize_batch_size": False},
        "autoencoder": {"teacher": short},
        "curriculum": {"teacher": {**short, "curriculum": {"ramp_epochs": 0}}},
        "fusion": {"teacher": {"steps": fusion_steps, "eval_every": max(1, fusion_steps // 4), "epsilon_decay_steps": max(1, fusion_steps // 2)}},
    }


def rule_figures(root: Path) -> dict[str, dict]:
    """Per rule: seconds and sampled peak memory from its Snakemake benchmark file, and the exact
    peak (``ru_maxrss``) its job wrote at the end of its log (``canids.workflow.logs``)."""
    layout = Layout(str(root))
    out = {}
    for rule in RULES:
        variant = None if rule in ("generate_synthetic", "preprocess") else VARIANT
        path = Path(layout.benchmark(DATASET, variant, rule))
        if not path.exists():
            continue
        with open(path) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        peak = [line for line in Path(layout.log(DATASET, variant, rule)).read_text().splitlines() if line.startswith(PEAK_MEMORY)]
        out[rule] = {"wall_s": round(float(row["s"]), 1), "peak_rss_mb": float(peak[-1].split()[-2]) if peak else None, "benchmark_max_rss_mb": round(float(row["max_rss"]), 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=50_000_000, help="frames to generate (about; default 50 M)")
    parser.add_argument("--workdir", default=None, help="where the experiment root goes (default: a temporary directory, removed afterwards)")
    parser.add_argument("--cores", default="2")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the VGAE and the GAT")
    parser.add_argument("--fusion-steps", type=int, default=200)
    parser.add_argument("--max-rss-mb", type=float, default=2048.0, help="peak memory every rule must stay under")
    parser.add_argument("--dry-run", action="store_true", help="only plan (snakemake -n): print the config and the jobs")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f"--frames must be a positive number of frames, got {args.frames}")
    with tempfile.TemporaryDirectory(prefix="canids-scale-") as tmp:
        work = Path(args.workdir or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        root = work / "runs"
        config = bench_config(args.frames, args.epochs, args.fusion_steps)
        config_file = work / "scale.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        target = Layout(str(root)).target(DATASET, VARIANT, "evaluation")
        env = {**os.environ, "CAN_EXPERIMENT_ROOT": str(root), "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
        cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(work), target, "--cores", str(args.cores), "--configfile", str(config_file)]
        if args.dry_run:
            proc = subprocess.run([*cmd, "-n", "--quiet", "rules"], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            jobs = [line.split()[0] for line in proc.stdout.splitlines() if line.split() and line.split()[0] in RULES]
            print(json.dumps({"benchmark": "scale", "dry_run": True, "frames_requested": args.frames, "config": config, "jobs": jobs}))
            return 0
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "--quiet", "all"], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"pipeline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", file=sys.stderr)
            return proc.returncode
        receipt = json.loads(Path(Layout(str(root)).generated_receipt(DATASET)).read_text())
        rules = rule_figures(root)
        preprocess = json.loads(Path(Layout(str(root)).file(DATASET, None, "preprocess")).read_text())
        peak = max(max(r["peak_rss_mb"] or 0.0, r["benchmark_max_rss_mb"]) for r in rules.values())
        print(json.dumps({
            "benchmark": "scale",
            "what": "synthetic dataset generated on disk, then preprocess -> autoencoder -> curriculum -> fusion -> onboarding -> evaluation (teacher, short training) via snakemake from an empty root",
            "frames_requested": args.frames,
            "frames": receipt["n_frames"],
            "scale": config["synthetic"]["scale"],
            "windows": {k: v["n_windows"] for k, v in preprocess["metrics"]["splits"].items()},
            "shards": preprocess["metrics"]["shards"],
            "shard_windows": preprocess["hyperparameters"]["shard_windows"],
            "wall_s": round(wall, 1),
            "rules": rules,
            "peak_rss_mb": peak,
            "max_rss_mb_limit": args.max_rss_mb,
            "under_limit": peak < args.max_rss_mb,
            "epochs": args.epochs,
            "fusion_steps": args.fusion_steps,
            "cores": args.cores,
        }))
        return 0 if peak < args.max_rss_mb else 1


if __name__ == "__main__":
    sys.exit(main())
