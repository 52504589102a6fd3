"""The evaluation stage: every detector on every official test split -> metrics.json + plots."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from canids.graphs.graphset import load_graphsets
from canids.stages.checkpoints import load_dqn, load_gat, load_vgae
from canids.stages.evaluation import predict_split, split_metrics
from canids.stages.fusion import VGAECalibration, detector_outputs
from canids.stages.plots import plot_confusion, plot_curves, plot_training_curves
from canids.stages.common import configure_threads
from canids.util import atomic_write_json
from canids.workflow.manifest import json_safe, load_manifest, write_manifest


def run_evaluation(dataset: str, variant: str, preprocess_manifest: str, autoencoder_manifest: str, curriculum_manifest: str, fusion_manifest: str, metrics_out: Path, manifest_out: Path, curves_png: Path, confusion_png: Path, training_png: Path) -> dict:
    t0 = time.perf_counter()
    configure_threads()
    pre = load_manifest(preprocess_manifest, stage="preprocess", dataset=dataset)
    ae = load_manifest(autoencoder_manifest, stage="autoencoder", dataset=dataset)
    gat_m = load_manifest(curriculum_manifest, stage="curriculum", dataset=dataset)
    fus = load_manifest(fusion_manifest, stage="fusion", dataset=dataset)
    vgae, _ = load_vgae(ae.artifact("checkpoint"))
    gat, _ = load_gat(gat_m.artifact("checkpoint"))
    q_net, fus_payload = load_dqn(fus.artifact("checkpoint"))
    calibration = VGAECalibration(**fus_payload["calibration"])
    tests, _ = load_graphsets(pre.artifact("test_graphs"))
    train_sets, _ = load_graphsets(pre.artifact("train_graphs"))
    splits = {"val": train_sets["val"], **tests}
    results, preds = {}, {}
    for split, graphs in splits.items():
        if len(graphs) == 0:
            continue
        out = detector_outputs(vgae, calibration, gat, graphs)
        preds[split] = predict_split(out, graphs, q_net, fus_payload["logreg"])
        results[split] = split_metrics(preds[split], graphs)
        f = results[split]
        print(f"[evaluation] {dataset}/{variant} {split}: windows={len(graphs)} attack={graphs.n_attack} f1 vgae={f['vgae']['f1']:.4f} gat={f['gat']['f1']:.4f} fusion={f['fusion']['f1']:.4f}", file=sys.stderr)
    metrics = {"dataset": dataset, "variant": variant, "splits": results}
    atomic_write_json(metrics_out, json_safe(metrics))
    test_preds = {k: v for k, v in preds.items() if k != "val"}
    plot_curves(test_preds or preds, curves_png)
    plot_confusion(test_preds or preds, confusion_png)
    plot_training_curves({m.data["stage"]: m.path.parent / "training_curves.csv" for m in (ae, gat_m, fus)}, training_png)
    summary = {split: {model: results[split][model]["f1"] for model in ("vgae", "gat", "fusion")} for split in results}
    return write_manifest(
        manifest_out,
        dataset=dataset,
        stage="evaluation",
        variant=variant,
        artifacts={"metrics": metrics_out, "roc_pr_curves": curves_png, "confusion_matrices": confusion_png, "training_curves": training_png},
        hyperparameters={"decision_rule": "fused score >= 0.5; VGAE threshold and GAT 0.5 from validation, never re-tuned on test"},
        upstream=[pre, ae, gat_m, fus],
        data_fingerprint={"sha256": pre.data["data_fingerprint"]["sha256"], "n_files": pre.data["data_fingerprint"]["n_files"]},
        wall_time_s=time.perf_counter() - t0,
        metrics={"f1": summary},
    )

