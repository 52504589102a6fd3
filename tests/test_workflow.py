"""The Snakemake workflow: the DAG users target by path, config validation, lint, a real run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from conftest import REPO, SNAKEMAKE, load_json, snakemake

#: Every test here runs Snakemake (a dry run at least): the integration suite.
pytestmark = pytest.mark.integration

SPLITS = ["train_01_attack_free", "train_02_with_attacks", "test_01_known_vehicle_known_attack"]


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table."""
    table = output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def test_dry_run_default_target_lists_every_stage(tmp_path):
    out = snakemake(["-n"], tmp_path).stdout
    assert job_counts(out) == {"generate_synthetic": 1, "preprocess": 1, "autoencoder": 1, "curriculum": 1, "fusion": 1, "onboarding": 1, "evaluation": 1, "all": 1}


def test_targeting_one_dataset_by_path_schedules_only_its_chain(tmp_path, fake_data_root):
    env = {"CAN_DATA_ROOT": str(fake_data_root)}
    out = snakemake(["-n", "experiment_runs/hcrl_sa/teacher/fusion/manifest.json"], tmp_path, env=env).stdout
    assert job_counts(out) == {"preprocess": 1, "autoencoder": 1, "curriculum": 1, "fusion": 1}
    assert "dataset=hcrl_sa" in out and "synthetic" not in out
    out = snakemake(["-n", "experiment_runs/hcrl_sa/teacher/curriculum/manifest.json"], tmp_path, env=env).stdout
    assert job_counts(out) == {"preprocess": 1, "autoencoder": 1, "curriculum": 1}


def test_experiment_root_env_moves_every_output(tmp_path, fake_data_root):
    root = tmp_path / "elsewhere"
    out = snakemake(["-n", f"{root}/hcrl_sa/student/autoencoder/manifest.json"], tmp_path, env={"CAN_DATA_ROOT": str(fake_data_root), "CAN_EXPERIMENT_ROOT": str(root)}).stdout
    assert f"{root}/hcrl_sa/preprocess/manifest.json" in out and f"{root}/hcrl_sa/logs/student/autoencoder.log" in out
    assert "experiment_runs/" not in out


def test_missing_dataset_directory_fails_dry_run_with_expected_path(tmp_path):
    proc = snakemake(["-n", "experiment_runs/hcrl_sa/teacher/autoencoder/manifest.json"], tmp_path, env={"CAN_DATA_ROOT": str(tmp_path / "nowhere")}, check=False)
    assert proc.returncode != 0
    assert str(tmp_path / "nowhere" / "hcrl_sa") in proc.stdout + proc.stderr


def test_bad_config_key_fails_dry_run_with_its_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preprocess:\n  window_sise: 50\n")
    proc = snakemake(["-n", "--configfile", str(bad)], tmp_path, check=False)
    assert proc.returncode != 0
    assert "window_sise" in proc.stdout + proc.stderr
    proc = snakemake(["-n", "--config", "variants=[huge]"], tmp_path, check=False)
    assert proc.returncode != 0 and "huge" in proc.stdout + proc.stderr


def test_lint_and_snakefmt_are_clean(tmp_path):
    lint = subprocess.run(["timeout", "-k", "5", "120", SNAKEMAKE, "--lint", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Lints for" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    fmt = subprocess.run([str(Path(SNAKEMAKE).parent / "snakefmt"), "--check", str(REPO / "workflow")], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


# ---------------------------------------------------------------------------- real run


def test_real_run_writes_valid_manifests_and_metrics(tiny_run):
    root = tiny_run / "experiment_runs" / "synthetic"
    schema = json.loads((REPO / "workflow" / "schemas" / "manifest.schema.json").read_text())
    chain = {"preprocess": root / "preprocess/manifest.json", **{s: root / f"teacher/{s}/manifest.json" for s in ("autoencoder", "curriculum", "fusion", "evaluation")}}
    for stage, path in chain.items():
        data = load_json(path)
        jsonschema.validate(data, schema)
        assert data["stage"] == stage and data["dataset"] == "synthetic"
        assert data["data_fingerprint"]["sha256"] == load_json(chain["preprocess"])["data_fingerprint"]["sha256"]
    # downstream manifests pin their upstream manifests by digest
    fusion = load_json(chain["fusion"])
    assert [u["stage"] for u in fusion["upstream"]] == ["preprocess", "autoencoder", "curriculum"]
    assert fusion["hyperparameters"]["steps"] == 300 and fusion["metrics"]["parameter_count"] > 0
    curriculum = load_json(chain["curriculum"])
    fractions = [r["fraction"] for r in curriculum["metrics"]["schedule"]]
    assert fractions[0] < fractions[-1] == 1.0
    assert curriculum["metrics"]["best_epoch"] >= 1

    metrics = load_json(root / "teacher/evaluation/metrics.json")
    assert "test_01_known_vehicle_known_attack" in metrics["splits"] and "test_02_unknown_vehicle_known_attack" in metrics["splits"]
    for split, models in metrics["splits"].items():
        for model in ("vgae", "gat", "fusion"):
            for key in ("f1", "precision", "recall", "mcc", "auroc", "auprc", "fpr", "n_windows", "n_attack_windows"):
                assert key in models[model], (split, model, key)
    test01 = metrics["splits"]["test_01_known_vehicle_known_attack"]
    assert test01["fusion"]["n_attack_windows"] > 0 and test01["fusion"]["f1"] > 0.5
    suppress = metrics["splits"]["test_05_suppress"]["fusion"]  # windows labelled from the recorded episodes
    assert suppress["n_attack_windows"] > 0 and suppress["f1"] is not None and set(suppress["per_attack_type"]) <= {"suppress"}
    assert metrics["skipped_splits"] == {} and len(metrics["splits"]) == 7  # validation + the 6 test splits
    # decisions at the false-alarm budget's thresholds, the F1-optimal ones reported beside them
    budget = fusion["metrics"]["decision_thresholds"]
    assert metrics["thresholds"]["false_alarm_budget"] == budget and budget["false_alarms_per_hour"] == 10.0
    assert min(budget["fusion"], budget["vgae"], budget["gat"]) >= 0.5 == metrics["thresholds"]["f1_optimal"]["fusion"]
    assert fusion["metrics"]["val_false_alarms_per_hour_at_budget"] <= 10.0
    for split, models in metrics["splits"].items():
        for model in ("vgae", "gat"):
            alternative = metrics["f1_optimal"][split][model]
            assert models[model]["fp"] <= alternative["fp"] and models[model]["tp"] <= alternative["tp"], (split, model)
        # the fused detector at the budget adds only the VGAE's own alarms above its "alone" threshold
        assert models["fusion"]["fp"] <= metrics["f1_optimal"][split]["fusion"]["fp"] + models["vgae"]["fp"], split
    for png in ("roc_pr_curves.png", "confusion_matrices.png", "training_curves.png"):
        assert (root / "teacher/evaluation" / png).read_bytes()[:4] == b"\x89PNG"


def test_rerun_is_a_no_op(tiny_run, tiny_config_file):
    out = snakemake(["-n", "--configfile", str(tiny_config_file)], tiny_run).stdout
    assert "Nothing to be done" in out


def test_a_code_change_reruns_exactly_the_stages_that_run_it(tiny_run, tiny_config_file, tmp_path):
    """Snakemake tracks a rule's script, not the package it imports: each rule carries the digest
    of the package code its stage runs. A real change to the fusion stage re-runs fusion,
    onboarding and evaluation (not the autoencoder or curriculum); documentation and comments re-run nothing."""
    checkout = tmp_path / "checkout"  # the repository with its own copy of the package
    checkout.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in ("src", ".venv"):
            (checkout / entry.name).symlink_to(entry)
    src = checkout / "src"
    shutil.copytree(REPO / "src" / "canids", src / "canids", ignore=shutil.ignore_patterns("__pycache__"))
    fusion = src / "canids" / "stages" / "fusion.py"
    original = fusion.read_text()

    def planned() -> dict[str, int]:
        out = snakemake(["-n", "--configfile", str(tiny_config_file)], tiny_run, env={"PYTHONPATH": str(src)}).stdout
        return {} if "Nothing to be done" in out else job_counts(out)

    assert planned() == {}
    fusion.write_text(original.replace('"""', '"""Reworded documentation. ', 1) + "\n# a new comment\n")
    assert planned() == {}
    fusion.write_text(original + "\n\nSIMULATED_FAILURE_FLOOR = 0.0\n")
    assert planned() == {"fusion": 1, "onboarding": 1, "evaluation": 1, "all": 1}


def test_a_corrupted_upstream_checkpoint_is_rebuilt_before_anything_downstream_is_touched(tiny_run, tiny_config_file, tmp_path):
    """Planning checks every artifact against its manifest: a tampered autoencoder checkpoint is
    rebuilt (not refused at every rerun), and the curriculum model is kept until it is replaced."""
    work = tmp_path / "copy"
    shutil.copytree(tiny_run / "experiment_runs", work / "experiment_runs")
    root = work / "experiment_runs/synthetic/teacher"
    ckpt = root / "autoencoder/model.ckpt"
    ckpt.write_bytes(ckpt.read_bytes() + b"tampered")
    target = "experiment_runs/synthetic/teacher/curriculum/manifest.json"  # targets go before --configfile
    dry = snakemake(["-n", target, "--configfile", str(tiny_config_file)], work)
    assert "synthetic/teacher/autoencoder: artifact 'checkpoint' (model.ckpt) does not match its manifest" in dry.stderr
    assert "synthetic/teacher/curriculum: upstream autoencoder is rebuilt" in dry.stderr
    assert (root / "curriculum/model.ckpt").exists(), "a dry run deletes nothing"
    snakemake([target, "--cores", "2", "--configfile", str(tiny_config_file)], work)
    ae = load_json(root / "autoencoder/manifest.json")
    assert ae["artifacts"]["checkpoint"]["sha256"] == __import__("hashlib").sha256(ckpt.read_bytes()).hexdigest()
    cur = load_json(root / "curriculum/manifest.json")
    assert [r["sha256"] for r in cur["upstream"] if r["stage"] == "autoencoder"] == [__import__("hashlib").sha256((root / "autoencoder/manifest.json").read_bytes()).hexdigest()]
    assert "Nothing to be done" in snakemake(["-n", target, "--configfile", str(tiny_config_file)], work).stdout


def test_deployable_detector_reproduces_evaluation_decisions(tiny_run):
    """The in-vehicle Detector (checkpoints only) decides exactly as the evaluation stage did."""
    from canids.graphs.shards import load_graphsets
    from canids.shape import file_name
    from canids.stages.checkpoints import load_dqn, load_gat, load_vgae
    from canids.stages.detector import Detector
    from canids.stages.fusion_apply import detector_outputs, fused_predictions
    from canids.stages.fusion_rule import VGAECalibration
    from canids.stages.thresholds import DecisionThresholds

    run = tiny_run / "experiment_runs" / "synthetic"
    tests, _ = load_graphsets(run / "preprocess" / file_name("preprocess", "test_graphs"))
    graphs = tests["test_01_known_vehicle_known_attack"]
    detector = Detector.from_run(run / "teacher").eval()
    vgae, gat = load_vgae(run / "teacher/autoencoder/model.ckpt")[0], load_gat(run / "teacher/curriculum/model.ckpt")[0]
    q_net, payload = load_dqn(run / "teacher/fusion/model.ckpt")
    thresholds = DecisionThresholds.from_payload(payload)
    assert thresholds.fusion >= 0.5 and payload["decision_thresholds"]["false_alarms_per_hour"] == 10.0
    out = detector_outputs(vgae, VGAECalibration(**payload["calibration"]), gat, graphs)
    _, fused, _ = fused_predictions(q_net, out)
    expected = out.flagged(fused, thresholds).astype(np.int64)
    assert np.array_equal(detector.detect_graphs(graphs, batch_size=64), expected)
    metrics = load_json(run / "teacher/evaluation/metrics.json")["splits"]["test_01_known_vehicle_known_attack"]["fusion"]
    assert int(expected.sum()) == metrics["confusion"]["tp"] + metrics["confusion"]["fp"]


def test_results_lists_every_split_with_f1_and_false_alarms(tiny_run, capsys):
    from canids.cli import main as canids_main

    assert canids_main(["results", "--root", str(tiny_run / "experiment_runs")]) == 0
    out = capsys.readouterr().out
    metrics = load_json(tiny_run / "experiment_runs/synthetic/teacher/evaluation/metrics.json")
    assert "false alarms/h" in out
    for split, models in metrics["splits"].items():
        line = next(row for row in out.splitlines() if row.strip().startswith(split + " "))
        assert line.split()[-1] == f"{models['fusion']['false_alarms_per_hour']:.1f}", line
