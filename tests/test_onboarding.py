"""Vehicle onboarding: declared in the catalog, checked before any job, recalibrating beside the zero-shot results."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from canids.data.catalog import CatalogError, load_catalog
from canids.shape import TEST_SPLITS, TRAIN_SPLITS
from canids.stages.fusion_rule import NEVER, flagged
from canids.stages.thresholds import DecisionThresholds
from conftest import load_json, snakemake

T02, T04 = TEST_SPLITS[1], TEST_SPLITS[3]


def write_capture(path: Path, attack_rows: int = 0, frames: int = 400) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{1672531200 + i / 100:.6f},{0x100 + i % 7:03X},0011223344556677,{1 if i < attack_rows else 0}\n" for i in range(frames))
    path.write_text("timestamp,arbitration_id,data_field,attack\n" + rows)


def two_vehicles(tmp_path: Path, onboarding: str, attack_rows: int = 0) -> Path:
    """Datasets ``car_a`` (trained on, with a test_04) and ``car_b`` (test_04's vehicle); the catalog's path."""
    data = tmp_path / "data"
    for split in (*TRAIN_SPLITS, T04):
        write_capture(data / "car_a" / split / "capture.csv")
    write_capture(data / "car_b" / TRAIN_SPLITS[0] / "parked-1.csv", attack_rows=attack_rows)
    write_capture(data / "car_b" / TRAIN_SPLITS[1] / "capture.csv")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"datasets:\n  car_a:\n    path: {data / 'car_a'}\n    onboarding:\n      {T04}: {onboarding}\n  car_b:\n    path: {data / 'car_b'}\n")
    return catalog


@pytest.mark.parametrize(
    "onboarding,message",
    [
        (f"{{dataset: car_b, directory: {T02}}}", f"datasets.car_a.onboarding.{T04}.directory: {T02} is a test split; test captures never onboard a vehicle"),
        ("{dataset: car_c}", f"datasets.car_a.onboarding.{T04}.dataset: unknown dataset 'car_c'; known datasets: car_a, car_b"),
        ("{dataset: car_b, colour: red}", f"datasets.car_a.onboarding.{T04}.colour: unknown key 'colour'"),
    ],
)
def test_the_catalog_refuses_test_captures_unknown_datasets_and_unknown_keys(tmp_path, onboarding, message):
    with pytest.raises(CatalogError, match="") as err:
        load_catalog(two_vehicles(tmp_path, onboarding))
    assert message in str(err.value)


def test_the_catalog_lists_each_vehicles_captures_from_its_own_dataset(tmp_path):
    catalog = load_catalog(two_vehicles(tmp_path, "{dataset: car_b, captures: ['parked-*']}"))
    (split, (source, files)), = catalog.onboarding_files("car_a").items()
    assert split == T04 and source.name == "car_b" and [f.path.name for f in files] == ["parked-1.csv"]
    assert files[0].split == f"onboarding.{T04}" and files[0].sha256 == hashlib.sha256(files[0].path.read_bytes()).hexdigest()
    assert load_catalog(two_vehicles(tmp_path, "{dataset: car_b, captures: ['driving-*']}")).onboarding_files("car_b") == {}


@pytest.mark.parametrize(
    "onboarding,attack_rows,message",
    [
        ("{dataset: car_b}", 3, "car_b/train_01_attack_free/parked-1.csv: onboarding capture for datasets.car_a.onboarding.test_04_unknown_vehicle_unknown_attack holds 3 labelled attack frames"),
        ("{dataset: car_b, directory: parked}", 0, "datasets.car_a.onboarding.test_04_unknown_vehicle_unknown_attack: onboarding directory"),
        ("{dataset: car_b, captures: ['driving-*']}", 0, "no capture files matching ['driving-*'] in onboarding directory"),
    ],
)
def test_bad_onboarding_captures_are_refused_before_any_job_naming_them(tmp_path, tiny_config_file, onboarding, attack_rows, message):
    catalog = two_vehicles(tmp_path, onboarding, attack_rows)
    work = tmp_path / "work"
    work.mkdir()
    proc = snakemake(["-n", "--configfile", str(tiny_config_file), "--config", f"catalog={catalog}", "datasets=[car_a]"], work, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    assert not (work / "experiment_runs" / "car_a").exists(), "nothing ran"


def test_a_vgae_surer_than_on_any_normal_window_is_never_outvoted():
    rng = np.random.default_rng(0)
    normal = np.zeros(400, bool)
    normal[:300] = True
    p_vgae, p_gat = rng.uniform(0, 0.7, 400), rng.uniform(0, 0.4, 400)
    fused = 0.5 * (p_vgae + p_gat)
    t = DecisionThresholds.for_budget(fused, p_vgae, p_gat, normal, hours=0.1, budget_per_hour=10)
    assert t.vgae_alone > p_vgae[normal].max() and t.gat_alone == NEVER  # the GAT's confidence does not transfer
    # the policy weighs the GAT fully (fused = p_gat = 0.1) but the VGAE is beyond every normal score
    assert bool(flagged(np.array([0.1]), np.array([0.1]), np.array([t.vgae_alone]), t.fusion, t.vgae_alone, t.gat_alone)[0])
    assert not bool(flagged(np.array([0.1]), np.array([0.1]), np.array([t.vgae_alone - 1e-3]), t.fusion, t.vgae_alone, t.gat_alone)[0])
    assert DecisionThresholds.f1_optimal().vgae_alone == NEVER  # F1-optimal decisions: the fused score alone


def test_an_onboarded_vehicle_gets_the_training_vehicles_threshold_rule_not_a_wider_one():
    """The vehicle's threshold comes from its attack-free scores by ``transfer_floor``, the rule of
    the training vehicle's: it leaves at least NORMAL_QUANTILE of them below it, and an attack that
    scores 2.5x the onboarding maximum is flagged. The earlier rule (the budget score, about the
    maximum, times three standard deviations of the log scores: 3.3x here) let it through."""
    import torch

    from canids.stages.autoencoder import NORMAL_QUANTILE, transfer_floor
    from canids.stages.onboarding import vehicle_threshold

    normal = np.exp(np.random.default_rng(0).normal(0.0, 0.4, 2000))
    calibration = vehicle_threshold(normal)
    assert calibration.threshold == pytest.approx(transfer_floor(normal))
    assert (normal >= calibration.threshold).mean() <= 1 - NORMAL_QUANTILE
    attack = torch.tensor([2.5 * normal.max()], dtype=torch.float64)
    assert float(calibration.probability(attack)[0]) > 0.5
    assert normal.max() * np.exp(3 * np.std(np.log(normal))) > attack.item()  # what the old rule would have needed


def test_onboarding_recalibrates_beside_the_zero_shot_results(tiny_run):
    root = tiny_run / "experiment_runs" / "synthetic"
    calibration = load_json(root / "teacher" / "onboarding" / "calibration.json")
    manifest = load_json(root / "teacher" / "onboarding" / "manifest.json")
    assert set(calibration["vehicles"]) == {T02, T04}
    vehicle = calibration["vehicles"][T04]
    assert [c["name"] for c in vehicle["captures"]] == ["attack-free-B-1.csv", "attack-free-B-2.csv"]
    assert {c["source"] for c in vehicle["captures"]} == {"synthetic/onboarding_unknown_vehicle"}
    assert vehicle["n_windows"] >= 20 and vehicle["hours"] > 0 and vehicle["calibration"]["threshold"] > 0
    # it pins its calibration and names the zero-shot results it read, which it never rewrites
    assert manifest["artifacts"]["calibration"]["sha256"] == hashlib.sha256((root / "teacher" / "onboarding" / "calibration.json").read_bytes()).hexdigest()
    fusion = root / "teacher" / "fusion"
    assert calibration["fusion_checkpoint_sha256"] == load_json(fusion / "manifest.json")["artifacts"]["checkpoint"]["sha256"] == hashlib.sha256((fusion / "model.ckpt").read_bytes()).hexdigest()
    metrics = load_json(root / "teacher" / "evaluation" / "metrics.json")
    assert set(metrics["onboarded"]) == {T02, T04}
    for split in (T02, T04):
        assert set(metrics["onboarded"][split]) >= {"vgae", "gat", "fusion"}
        assert metrics["onboarded"][split]["fusion"]["f1"] is not None and "false_alarms_per_hour" in metrics["onboarded"][split]["fusion"]
        assert metrics["splits"][split]["fusion"]["f1"] is not None  # zero-shot beside it
    evaluation = load_json(root / "teacher" / "evaluation" / "manifest.json")
    assert {u["stage"] for u in evaluation["upstream"]} >= {"fusion", "onboarding"}


def test_the_cli_onboards_a_run_and_detects_with_it_refusing_attacks_and_other_runs(tiny_run, tmp_path, capsys):
    from canids.cli import main

    root = tiny_run / "experiment_runs" / "synthetic"
    run, raw = root / "teacher", root / "raw"
    onboarding = sorted(str(p) for p in (raw / "onboarding_unknown_vehicle").glob("*.csv"))
    out = tmp_path / "vehicle.json"
    assert main(["onboard", str(run), *onboarding, "--out", str(out)]) == 0
    made = load_json(out)
    assert made["vehicle"]["n_windows"] >= 20 and [c["name"] for c in made["vehicle"]["captures"]] == ["attack-free-B-1.csv", "attack-free-B-2.csv"]
    stage = load_json(run / "onboarding" / "calibration.json")["vehicles"][T04]
    assert made["vehicle"]["calibration"] == stage["calibration"]  # the CLI and the stage recalibrate alike
    test = sorted(str(p) for p in (raw / T04).glob("*.csv"))
    capsys.readouterr()
    assert main(["detect", str(run), *test, "--onboarding", str(out), "--json"]) == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["capture"] for r in reports] == test and all("caught" in r for r in reports)
    # onboarding captures must be attack-free; an onboarding file belongs to one run
    assert main(["onboard", str(run), test[0], "--out", str(tmp_path / "bad.json")]) == 1
    assert "holds" in capsys.readouterr().err and not (tmp_path / "bad.json").exists()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**made, "fusion_checkpoint_sha256": "0" * 64}))
    assert main(["detect", str(run), test[0], "--onboarding", str(other)]) == 1
    assert f"{other}: made for another detector" in capsys.readouterr().err
