"""Job specs through Snakemake: dry runs of the example specs (generate-only), bad specs failing
at parse time before any job, the pipeline spec run for real, and a fusion-only spec pinned to an
exported bundle that runs without retraining anything upstream."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from canids.cli import main as cli
from canids.shape import STAGE_NAMES
from canids.util import sha256_file

from conftest import REPO, load_json, snakemake

#: Every test here runs Snakemake (a dry run at least): the integration suite.
pytestmark = pytest.mark.integration

DATASETS = ("hcrl_ch", "hcrl_sa", "set_01", "set_02", "set_03", "set_04")
SPLITS = ("train_01_attack_free", "train_02_with_attacks", "test_01_known_vehicle_known_attack")


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's first 'Job stats' table."""
    table = output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def write_spec(path: Path, spec: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec))
    return path


# ------------------------------------------------------------------------------ dry runs

EXAMPLES = {
    "example_vgae": {"preprocess": 6, "autoencoder": 6, "all": 1},
    "example_gat": {"preprocess": 2, "autoencoder": 2, "curriculum": 2, "all": 1},
    "example_fusion": {"preprocess": 1, "autoencoder": 1, "curriculum": 1, "fusion": 1, "all": 1},
    "example_pipeline": {"generate_synthetic": 1, "preprocess": 1, "autoencoder": 1, "curriculum": 1, "fusion": 1, "onboarding": 1, "evaluation": 1, "all": 1},
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_spec_dry_run_schedules_datasets_x_training_types(name, tmp_path, fake_data_root):
    root = tmp_path / "root"
    out = snakemake(["-n", "--configfile", str(REPO / "jobs" / f"{name}.json")], tmp_path, env={"CAN_DATA_ROOT": str(fake_data_root), "CAN_EXPERIMENT_ROOT": str(root)}).stdout
    assert job_counts(out) == EXAMPLES[name]
    assert f"{root}/" in out and "experiment_runs" not in out  # CAN_EXPERIMENT_ROOT: outputs and logs
    assert not root.exists()  # generate-only


def test_fusion_alone_without_manifest_schedules_its_upstream(tmp_path, fake_data_root):
    out = snakemake(["-n", "--configfile", str(REPO / "jobs" / "example_fusion.json")], tmp_path, env={"CAN_DATA_ROOT": str(fake_data_root)}).stdout
    assert re.search(r"rule curriculum:\n(.*\n)*?\s+wildcards: dataset=hcrl_sa, variant=teacher", out)
    assert "experiment_runs/hcrl_sa/teacher/fusion/manifest.json" in out


def test_all_datasets_stages_and_variants_dry_run(tmp_path, fake_data_root):
    spec = write_spec(tmp_path / "all.json", {"name": "everything", "datasets": "all", "training_types": ["autoencoder", "curriculum", "fusion", "evaluation"], "variants": ["teacher", "student", "student_kd"]})
    out = snakemake(["-n", "--configfile", str(spec)], tmp_path, env={"CAN_DATA_ROOT": str(fake_data_root)}).stdout
    assert job_counts(out) == {"preprocess": 6, "autoencoder": 18, "curriculum": 18, "fusion": 18, "onboarding": 18, "evaluation": 18, "all": 1}


def test_dry_run_with_slurm_profile_prints_rule_dataset_and_resources(tmp_path, fake_data_root):
    profile = REPO / "profiles" / "slurm"
    assert (profile / "config.yaml").exists()
    site_vars = ("PARTITION", "GPU_PARTITION", "ACCOUNT", "GPU_MODEL", "RUNTIME_SCALE", "MEM_SCALE")
    env = {"CAN_DATA_ROOT": str(fake_data_root), **{f"CANIDS_SLURM_{v}": "" for v in site_vars}}  # "" = the profile's defaults
    out = snakemake(["-n", "--configfile", str(REPO / "jobs" / "example_gat.json"), "--profile", str(profile)], tmp_path, env=env, timeout=120).stdout
    jobs = re.findall(r"^rule (\w+):\n((?:    .*\n)+)", out, re.M)
    per_rule = {}
    for rule, body in jobs:
        per_rule.setdefault(rule, []).append(body)
    assert sorted(per_rule) == ["all", "autoencoder", "curriculum", "preprocess"]
    for rule in ("preprocess", "autoencoder", "curriculum"):
        for body in per_rule[rule]:
            assert re.search(r"wildcards: dataset=(hcrl_sa|hcrl_ch)", body), body
            resources = re.search(r"resources: (.*)", body).group(1)
            assert "slurm_partition=debug" in resources and "mem_mb=" in resources and "runtime=" in resources, resources
            assert ("gpu=1" in resources) == (rule != "preprocess"), resources
    assert {re.search(r"dataset=(\w+)", b).group(1) for b in per_rule["curriculum"]} == {"hcrl_sa", "hcrl_ch"}


# ------------------------------------------------------------------------------ bad specs

GOOD = {"name": "bad_job", "datasets": ["hcrl_sa"], "training_types": ["autoencoder"]}
BAD = {
    "malicious_epochs": ({**GOOD, "extra_args": {"epochs": "5; rm -rf ~"}}, "bad.json: extra_args.epochs: expected an integer >= 1 and <= 10000, got '5; rm -rf ~'"),
    "missing_name": ({"datasets": ["hcrl_sa"], "training_types": ["autoencoder"]}, "bad.json: name: missing required field; expected a job name"),
    "unknown_dataset": ({**GOOD, "datasets": ["hcrl_zz"]}, "bad.json: datasets[0]: unknown dataset 'hcrl_zz'; expected \"all\" or one of hcrl_ch, hcrl_sa"),
    "empty_datasets": ({**GOOD, "datasets": []}, "bad.json: datasets: expected \"all\" or a non-empty list of dataset names"),
    "unknown_training_type": ({**GOOD, "training_types": ["vgae"]}, f"bad.json: training_types[0]: expected one of {', '.join(STAGE_NAMES)}, got 'vgae'"),
    "unknown_extra_arg": ({**GOOD, "extra_args": {"lr": 0.1}}, "bad.json: extra_args.lr: unknown key 'lr'; allowed keys: accelerator, batch_size"),
    "template_without_dataset": ({**GOOD, "datasets": "all", "dependency_manifests": {"default": "/pins/m.json"}}, "bad.json: dependency_manifests.default: template '/pins/m.json' has no {dataset} placeholder but applies to 6 datasets"),
    "missing_manifest": ({**GOOD, "dependency_manifests": {"hcrl_sa": "{experiment_root}/pins/{dataset}.json"}}, "bad.json: dependency_manifests.hcrl_sa: manifest for dataset 'hcrl_sa' not found: "),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_fails_the_dry_run_before_any_job(case, tmp_path, fake_data_root):
    spec, message = BAD[case]
    path = write_spec(tmp_path / "jobs" / "bad.json", spec)
    proc = snakemake(["-n", "--configfile", str(path)], tmp_path, env={"CAN_DATA_ROOT": str(fake_data_root)}, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "JobSpecError" in output and message in output, output[-3000:]
    assert "Job stats" not in output and "Building DAG" not in output


def test_invalid_json_spec(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", "datasets": [')
    proc = snakemake(["-n", "--configfile", str(broken)], tmp_path, check=False)
    # Snakemake's own message does not name the file: `canids spec check` does
    assert proc.returncode != 0 and "Config file is not valid JSON or YAML" in proc.stdout + proc.stderr
    assert cli(["spec", "check", str(broken)]) == 1
    assert f"{broken}: not valid JSON: Expecting value at line 1, column 28" in capsys.readouterr().err
    # not JSON but valid YAML: Snakemake would take it; the parse-time check refuses it, naming the file
    trailing = tmp_path / "trailing.json"
    trailing.write_text('{"name": "x", "datasets": ["hcrl_sa"], "training_types": ["preprocess"],}')
    proc = snakemake(["-n", "--configfile", str(trailing)], tmp_path, check=False)
    assert proc.returncode != 0
    assert "trailing.json: not valid JSON: Expecting property name enclosed in double quotes at line 1, column 73" in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ real runs


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_config_file) -> tuple[Path, Path, str]:
    """jobs/example_pipeline.json run for real at tiny size (the tiny config file is merged after the spec)."""
    work = tmp_path_factory.mktemp("spec_pipeline")
    root = work / "root"
    proc = snakemake(["--cores", "2", "--configfile", str(REPO / "jobs" / "example_pipeline.json"), str(tiny_config_file)], work, env={"CAN_EXPERIMENT_ROOT": str(root)}, timeout=600)
    return work, root, proc.stdout + proc.stderr


@pytest.mark.integration
def test_pipeline_spec_runs_for_real(pipeline_run):
    work, root, output = pipeline_run
    assert job_counts(output) == {"generate_synthetic": 1, "preprocess": 1, "autoencoder": 1, "curriculum": 1, "fusion": 1, "onboarding": 1, "evaluation": 1, "all": 1}
    metrics = load_json(root / "synthetic/teacher/evaluation/metrics.json")
    assert metrics["splits"]["test_01_known_vehicle_known_attack"]["fusion"]["n_windows"] > 0
    for stage in ("autoencoder", "curriculum", "fusion", "evaluation"):
        assert (root / f"synthetic/logs/teacher/{stage}.log").exists()
        assert load_json(root / f"synthetic/teacher/{stage}/manifest.json")["hyperparameters"].get("seed", 0) == 0
    assert not (work / "experiment_runs").exists()  # CAN_EXPERIMENT_ROOT honoured everywhere


def _upstream_files(root: Path) -> dict[str, str]:
    files = [p for d in ("preprocess", "teacher/autoencoder", "teacher/curriculum") for p in (root / "synthetic" / d).rglob("*") if p.is_file()]
    return {str(p): sha256_file(p) for p in files}


@pytest.mark.integration
def test_fusion_only_spec_pinned_to_an_exported_bundle_does_not_retrain(pipeline_run, tmp_path, tiny_config_file):
    _, root_a, _ = pipeline_run
    bundle = tmp_path / "synthetic_teacher.json"
    assert cli(["export-manifest", "--dataset", "synthetic", "--variant", "teacher", "--root", str(root_a), "--out", str(bundle)]) == 0
    before = _upstream_files(root_a)
    # other settings than the pinned run's (epochs): without the pin Snakemake would retrain upstream
    spec = write_spec(tmp_path / "jobs" / "fusion_pinned.json", {"name": "fusion_pinned", "datasets": ["synthetic"], "training_types": ["fusion"], "variant": "teacher", "extra_args": {"epochs": 1, "steps": 200}, "dependency_manifests": {"default": str(bundle)}})
    root_b, work_b = tmp_path / "root_b", tmp_path / "work_b"
    work_b.mkdir()
    proc = snakemake(["--cores", "2", "--configfile", str(spec), str(tiny_config_file)], work_b, env={"CAN_EXPERIMENT_ROOT": str(root_b)}, timeout=300)
    output = proc.stdout + proc.stderr
    assert job_counts(output) == {"fusion": 1, "all": 1}
    for rule in ("generate_synthetic", "preprocess", "autoencoder", "curriculum"):
        assert f"rule {rule}:" not in output
    assert sorted(p.name for p in (root_b / "synthetic" / "teacher").iterdir()) == ["fusion"]
    assert not (root_b / "synthetic" / "preprocess").exists()
    fusion = load_json(root_b / "synthetic/teacher/fusion/manifest.json")
    assert fusion["hyperparameters"]["steps"] == 200
    pinned = load_json(bundle)
    assert {u["stage"]: (u["path"], u["sha256"]) for u in fusion["upstream"]} == {s: (pinned["manifests"][s], pinned["manifest_sha256"][s]) for s in ("preprocess", "autoencoder", "curriculum")}
    assert _upstream_files(root_a) == before  # the pinned files are untouched


@pytest.mark.integration
def test_pin_in_the_same_root_is_never_rebuilt(pipeline_run, tmp_path, tiny_config_file):
    """A bundle with {experiment_root} pins the run's own teacher: changed settings retrain only fusion."""
    work, root, _ = pipeline_run
    bundle = tmp_path / "portable.json"
    assert cli(["export-manifest", "--dataset", "synthetic", "--variant", "teacher", "--root", str(root), "--out", str(bundle), "--relative-to-root"]) == 0
    assert load_json(bundle)["manifests"]["autoencoder"] == "{experiment_root}/synthetic/teacher/autoencoder/manifest.json"
    spec = {"name": "same_root", "datasets": ["synthetic"], "training_types": ["fusion", "evaluation"], "variant": "teacher", "extra_args": {"epochs": 1, "steps": 100}}
    env = {"CAN_EXPERIMENT_ROOT": str(root)}
    unpinned = snakemake(["-n", "--configfile", str(write_spec(tmp_path / "a.json", spec)), str(tiny_config_file)], work, env=env).stdout
    assert job_counts(unpinned) == {"autoencoder": 1, "curriculum": 1, "fusion": 1, "onboarding": 1, "evaluation": 1, "all": 1}
    pinned = snakemake(["-n", "--configfile", str(write_spec(tmp_path / "b.json", {**spec, "dependency_manifests": {"default": str(bundle)}})), str(tiny_config_file)], work, env=env).stdout
    assert job_counts(pinned) == {"fusion": 1, "onboarding": 1, "evaluation": 1, "all": 1}
    assert f"{root}/synthetic/teacher/autoencoder/model.ckpt (before update)" in pinned


@pytest.mark.integration
def test_tampered_pinned_checkpoint_is_refused_before_any_job(pipeline_run, tmp_path, tiny_config_file):
    _, root_a, _ = pipeline_run
    copy = tmp_path / "copy"
    shutil.copytree(root_a / "synthetic", copy / "synthetic", ignore=shutil.ignore_patterns("raw", "evaluation", "fusion"))
    bundle = tmp_path / "bundle.json"
    assert cli(["export-manifest", "--dataset", "synthetic", "--variant", "teacher", "--root", str(copy), "--out", str(bundle)]) == 0
    ckpt = copy / "synthetic/teacher/curriculum/model.ckpt"
    expected = sha256_file(ckpt)
    ckpt.write_bytes(ckpt.read_bytes() + b"tampered")
    spec = write_spec(tmp_path / "jobs" / "tampered.json", {"name": "tampered", "datasets": ["synthetic"], "training_types": ["fusion"], "dependency_manifests": {"synthetic": str(bundle)}})
    root_b = tmp_path / "root_b"
    proc = snakemake(["--cores", "2", "--configfile", str(spec), str(tiny_config_file)], tmp_path, env={"CAN_EXPERIMENT_ROOT": str(root_b)}, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"tampered.json: dependency_manifests.synthetic: bundle {bundle}: manifests.curriculum: {copy}/synthetic/teacher/curriculum/manifest.json: artifact 'checkpoint' ({ckpt}) does not match its manifest" in output
    assert f"expected sha256 {expected}, found {sha256_file(ckpt)}" in output
    assert "Job stats" not in output and not root_b.exists()
