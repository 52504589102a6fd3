"""The evaluation stage's job: every detector on every official test split -> metrics.json + plots."""

from __future__ import annotations

import json
import sys
import time

from canids.graphs.shards import load_graphsets
from canids.settings import stage_settings
from canids.shape import STAGES, VALIDATION
from canids.stages.evaluation import MODELS, at_thresholds, predict_split, split_metrics
from canids.stages.fusion_apply import detector_outputs
from canids.stages.onboarding import VehicleCalibration, onboarded_outputs
from canids.stages.plots import plot_confusion, plot_curves, plot_training_curves
from canids.stages.trainer import configure_threads
from canids.util import atomic_write_json
from canids.workflow.job import Job
from canids.workflow.manifest import json_safe, load_manifest, write_manifest
from canids.workflow.trained import load_trained


#: What metrics.json keeps of the detectors at the F1-optimal thresholds, beside the budget's.
ALTERNATIVE_METRICS = ("f1", "precision", "recall", "false_alarms_per_hour", "fp", "tp")


def run(job: Job) -> dict:
    t0 = time.perf_counter()
    configure_threads(job.threads)
    dataset, variant = job.dataset, job.variant
    trained = load_trained(job)
    pre, models = trained.preprocess, trained.manifests
    vgae, gat, q_net, fus_payload, calibration = trained.vgae, trained.gat, trained.policy, trained.fusion_payload, trained.calibration
    tests, _ = load_graphsets(pre.artifact("test_graphs"))
    train_sets, _ = load_graphsets(pre.artifact("train_graphs"))
    splits = {VALIDATION: train_sets[VALIDATION], **tests}
    thresholds = trained.thresholds
    results, preds, f1_optimal, outs = {}, {}, {}, {}
    for split, graphs in splits.items():
        if len(graphs) == 0:
            continue
        out = outs[split] = detector_outputs(vgae, calibration, gat, graphs)
        preds[split] = predict_split(out, graphs, q_net, fus_payload["logreg"], thresholds)
        results[split] = split_metrics(preds[split], graphs)
        alternative = split_metrics(at_thresholds(preds[split], out, thresholds.at_f1_optimal()), graphs)
        f1_optimal[split] = {m: {k: alternative[m][k] for k in ALTERNATIVE_METRICS} for m in MODELS}
        f1 = " ".join(f"{m}={_f1_text(results[split][m])}" for m in MODELS)
        print(f"[evaluation] {dataset}/{variant} {split}: windows={len(graphs)} attack={graphs.n_attack} f1 {f1}", file=sys.stderr)
    onboarding_m = load_manifest(job.inputs["onboarding"], stage="onboarding", dataset=dataset)
    onboarded = {}
    for split, entry in json.loads(onboarding_m.artifact("calibration").read_text())["vehicles"].items():
        if split not in tests or len(tests[split]) == 0:
            continue
        vehicle = VehicleCalibration.from_dict(entry)
        out = onboarded_outputs(vgae, vehicle, tests[split], outs[split])
        onboarded[split] = split_metrics(predict_split(out, tests[split], q_net, fus_payload["logreg"], vehicle.thresholds), tests[split])
        zero_shot = _f1_text(results[split]["fusion"])
        print(f"[evaluation] {dataset}/{variant} {split} onboarded: f1 " + " ".join(f"{m}={_f1_text(onboarded[split][m])}" for m in MODELS) + f" (zero-shot fusion {zero_shot})", file=sys.stderr)
    atomic_write_json(job.output("metrics"), json_safe({"dataset": dataset, "variant": variant, "study": {"run": job.run, "seed": job.settings.training.seed}, "thresholds": {"false_alarm_budget": thresholds.to_dict(), "f1_optimal": thresholds.at_f1_optimal().to_dict()}, "splits": results, "f1_optimal": f1_optimal, "onboarded": onboarded, "skipped_splits": pre.data["metrics"].get("skipped_splits", {})}))
    test_preds = {k: v for k, v in preds.items() if k != VALIDATION}
    plot_curves(test_preds or preds, job.output("roc_pr_curves"))
    plot_confusion(test_preds or preds, job.output("confusion_matrices"))
    plot_training_curves({stage: _curves(m) for stage, m in models.items()}, job.output("training_curves"))
    summary = {split: {model: results[split][model]["f1"] for model in MODELS} for split in results}
    return write_manifest(
        job.output("manifest"),
        dataset=dataset,
        stage=job.stage,
        variant=variant,
        artifacts={name: job.output(name) for name in STAGES[job.stage].artifacts},
        hyperparameters={**stage_settings(job.settings, job.stage, variant), "decision_rule": "fusion_rule.flagged at the fusion checkpoint's thresholds (false-alarm budget on validation; the VGAE alone above every normal validation score), onboarded splits at their vehicle's; never re-tuned on test"},
        upstream=[pre, *models.values(), onboarding_m],
        data_fingerprint={"sha256": pre.data["data_fingerprint"]["sha256"], "n_files": pre.data["data_fingerprint"]["n_files"]},
        wall_time_s=time.perf_counter() - t0,
        metrics={"f1": summary, "onboarded_f1": {split: {model: onboarded[split][model]["f1"] for model in MODELS} for split in onboarded}},
    )


def _f1_text(metrics: dict) -> str:
    """F1 for the log line; a split without attack windows has none and shows its false alarms."""
    if metrics["f1"] is None:
        return f"n/a ({metrics['fp']} false alarms)"
    return f"{metrics['f1']:.4f}"


def _curves(manifest):
    """A training stage's curve: its pinned artifact, or (manifests written before it was one) the file beside it."""
    if "training_curves" in manifest.data["artifacts"]:
        return manifest.artifact("training_curves")
    return manifest.path.parent / "training_curves.csv"
