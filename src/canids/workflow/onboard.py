"""The onboarding stage's job: one recalibration per unseen vehicle -> calibration.json + manifest.

Reads the graph sets preprocessing built from each declared vehicle's attack-free captures
(``canids.data.onboarding``), and the variant's three trained models; writes, for each test
split with a declared vehicle, a ``VehicleCalibration`` (``canids.stages.onboarding``) naming
the captures it was measured on. The false-alarm budget is the one the fusion stage chose its
thresholds for. The zero-shot checkpoints are read, never written: onboarding is a separate
result beside them, and a dataset that declares no vehicle gets an empty one.
"""

from __future__ import annotations

import sys
import time

from canids.graphs.shards import load_graphsets
from canids.settings import stage_settings
from canids.shape import TEST_SPLITS, onboarding_set
from canids.stages.onboarding import KIND, onboard
from canids.stages.trainer import configure_threads
from canids.util import atomic_write_json
from canids.workflow.job import Job
from canids.workflow.manifest import write_manifest
from canids.workflow.trained import load_trained


def run(job: Job) -> dict:
    t0 = time.perf_counter()
    configure_threads(job.threads)
    dataset, variant = job.dataset, job.variant
    trained = load_trained(job)
    pre, models = trained.preprocess, trained.manifests
    sets, _ = load_graphsets(pre.artifact("train_graphs"))
    files = pre.data["data_fingerprint"].get("files", [])
    vehicles = {}
    for split in TEST_SPLITS:
        name = onboarding_set(split)
        if name not in sets:
            continue
        captures = [{k: f.get(k) for k in ("name", "source", "sha256", "frames")} for f in files if f.get("split") == name]
        vehicle = onboard(trained.vgae, trained.gat, trained.policy, sets[name], trained.thresholds, captures)
        vehicles[split] = vehicle.to_dict()
        print(f"[onboarding] {dataset}/{variant} {split}: {vehicle.n_windows} attack-free windows ({vehicle.hours * 60:.1f} min) from {', '.join(c['source'] + '/' + c['name'] for c in captures)}; VGAE score scale {vehicle.score_scale[0]:.4g}/{vehicle.score_scale[1]:.4g}, thresholds {vehicle.thresholds.to_dict()}", file=sys.stderr)
    if not vehicles:
        print(f"[onboarding] {dataset}: the catalog declares no onboarding captures (datasets.{dataset}.onboarding); nothing to recalibrate", file=sys.stderr)
    atomic_write_json(job.output("calibration"), {"kind": KIND, "dataset": dataset, "variant": variant, "fusion_checkpoint_sha256": models["fusion"].data["artifacts"]["checkpoint"]["sha256"], "vehicles": vehicles})
    return write_manifest(
        job.output("manifest"),
        dataset=dataset,
        stage=job.stage,
        variant=variant,
        artifacts={"calibration": job.output("calibration")},
        hyperparameters=stage_settings(job.settings, job.stage, variant),
        upstream=[pre, *models.values()],
        data_fingerprint={"sha256": pre.data["data_fingerprint"]["sha256"], "n_files": pre.data["data_fingerprint"]["n_files"]},
        wall_time_s=time.perf_counter() - t0,
        metrics={"vehicles": {split: {k: v[k] for k in ("n_windows", "hours", "score_scale", "decision_thresholds")} for split, v in vehicles.items()}},
    )
