"""Studies: seeds and sweeps make points with their own results, shared where a point changes
nothing upstream; the table's statistics; and a real study, killed and finished."""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from canids.cli import main as canids_main
from canids.settings import load_settings
from canids.shape import STUDY_FILES, Layout
from canids.study import SEED, parse_run, reaches, restrict
from canids.workflow import tables
from canids.workflow.config import ConfigSources, JobSpecError
from canids.workflow.dag import Pipeline
from conftest import REPO, load_json, slurm_submit_env, snakemake

import yaml


def _pipeline(tmp_path: Path, **spec) -> Pipeline:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(experiment_root=str(tmp_path / "root"), datasets=["synthetic"], **spec)
    return Pipeline.from_settings(load_settings(config), ConfigSources([("spec.json", spec)]))


def job_counts(stdout: str) -> dict[str, int]:
    """Snakemake's "Job stats" table: rule -> number of jobs."""
    lines = stdout.split("Job stats:", 1)[1].strip().splitlines()[2:]
    counts = {}
    for line in lines:
        if not line.strip():
            break
        rule, n = line.split()
        counts[rule] = int(n)
    return counts


def _count(results, stage: str) -> int:
    return sum(1 for _, _, s, _ in results if s == stage)


# ------------------------------------------------------------------ points, runs, sharing


def test_without_seeds_or_sweep_the_paths_are_the_default_runs(tmp_path):
    pipeline = _pipeline(tmp_path, training_types=["evaluation"], variants=["teacher"])
    assert pipeline.targets() == [Layout(pipeline.root).target("synthetic", "teacher", "evaluation")]
    assert "+" not in pipeline.targets()[0]
    assert pipeline.study_targets() == []


def test_a_seed_equal_to_the_configured_one_is_the_default_run(tmp_path):
    pipeline = _pipeline(tmp_path, training_types=["evaluation"], variants=["teacher"], seeds=[0, 1])
    runs = sorted(Layout(pipeline.root).parse(t)[3] for t in pipeline.targets())
    assert runs == ["", "+training.seed=1"]


def test_sweeping_a_fusion_setting_shares_the_vgae_and_the_gat(tmp_path):
    pipeline = _pipeline(tmp_path, training_types=["evaluation"], variants=["teacher"], seeds=[0, 1, 2], sweep={"fusion.teacher.gamma": [0.2, 0.5, 0.9]})
    results = pipeline.study_results()
    assert len(pipeline.settings.points()) == 9
    assert (_count(results, "preprocess"), _count(results, "autoencoder"), _count(results, "curriculum")) == (1, 3, 3)
    assert (_count(results, "fusion"), _count(results, "evaluation")) == (9, 9)
    fusion_runs = {run for _, _, stage, run in results if stage == "fusion"}
    assert "+fusion.teacher.gamma=0.5+training.seed=2" in fusion_runs


def test_a_teacher_setting_reaches_its_distilled_student_but_not_the_plain_student():
    path = "curriculum.teacher.learning_rate"
    assert reaches(path, "curriculum", "teacher") and reaches(path, "fusion", "teacher")
    assert reaches(path, "curriculum", "student_kd")
    assert not reaches(path, "curriculum", "student") and not reaches(path, "autoencoder", "teacher")
    assert reaches("distillation.alpha", "curriculum", "student_kd") and not reaches("distillation.alpha", "curriculum", "teacher")
    assert reaches(SEED, "autoencoder", "student") and not reaches(SEED, "preprocess", None)
    assert restrict("+curriculum.teacher.learning_rate=0.01+training.seed=3", "autoencoder", "teacher") == "+training.seed=3"


def test_a_preprocess_sweep_gets_its_own_preprocessing(tmp_path):
    pipeline = _pipeline(tmp_path, training_types=["autoencoder"], variants=["teacher"], sweep={"preprocess.window_size": [50, 100]})
    runs = sorted(run for _, _, stage, run in pipeline.study_results() if stage == "preprocess")
    assert runs == ["", "+preprocess.window_size=50"]  # 100 is config/config.yaml's


def test_a_run_name_round_trips_into_the_settings_it_names(tmp_path):
    pipeline = _pipeline(tmp_path, training_types=["fusion"], variants=["teacher"], seeds=[0, 7], sweep={"fusion.teacher.gamma": [0.2, 0.5]})
    run = "+fusion.teacher.gamma=0.5+training.seed=7"
    settings = pipeline.settings.at(run)
    assert settings.training.seed == 7 and settings.fusion["teacher"].gamma == 0.5
    assert dict(parse_run(run)) == {"fusion.teacher.gamma": "0.5", SEED: "7"}


def test_a_run_name_survives_snakemake_handing_a_job_to_a_cluster_node():
    """A SLURM job re-creates its job from ``--target-jobs rule:name=value,...``: a run name
    with several settings must come back whole (a comma in it would split it)."""
    from snakemake.target_jobs import parse_target_jobs_cli_args
    from snakemake_interface_executor_plugins.utils import TargetSpec, encode_target_jobs_cli_args

    from canids.study import run_name

    wildcards = {"dataset": "synthetic", "variant": "teacher", "run": run_name([("fusion.teacher.gamma", 0.5), ("curriculum.teacher.learning_rate", 0.0003), (SEED, 3)])}
    encoded = encode_target_jobs_cli_args([TargetSpec("fusion", wildcards)])
    (spec,) = parse_target_jobs_cli_args(shlex.split(" ".join(encoded)))  # as the job's shell passes it
    assert spec.wildcards_dict == wildcards


# ------------------------------------------------------------------ refused before any job


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"seeds": []}, "seeds: expected a non-empty list of distinct training seeds"),
        ({"seeds": [1, 1]}, "seeds: duplicate entries [1]"),
        ({"seeds": [-1]}, "seeds[0]"),
        ({"sweep": {"fusion.teacher.nope": [1]}}, "sweep.fusion.teacher.nope: no such setting"),
        ({"sweep": {"fusion.teacher": [1]}}, "sweep: invalid key 'fusion.teacher'; expected a settings path such as curriculum.teacher.learning_rate"),
        ({"sweep": {"fusion.teacher.model": [1]}}, "sweep.fusion.teacher.model: a section, not one setting"),
        ({"sweep": {"fusion.teacher.gamma": ["high"]}}, "sweep.fusion.teacher.gamma[0]: expected a number"),
        ({"sweep": {"fusion.teacher.gamma": []}}, "sweep.fusion.teacher.gamma"),
        ({"sweep": {"experiment_root": ["/a", "/b"]}}, "sweep"),
        ({"seeds": list(range(30)), "sweep": {"fusion.teacher.gamma": [0.1, 0.3, 0.5, 0.7]}, "max_jobs": 50}, "more than max_jobs 50"),
    ],
)
def test_a_bad_study_is_refused_naming_the_field(tmp_path, capsys, spec, message):
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"name": "study", "datasets": ["synthetic"], "variants": ["teacher"], "training_types": ["evaluation"], **spec}))
    assert canids_main(["spec", "check", str(path), "--root", str(tmp_path / "root")]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and message in err, err
    assert not (tmp_path / "root").exists()


def test_snakemake_refuses_an_oversized_study_before_any_job(tmp_path):
    spec = tmp_path / "study.json"
    spec.write_text(json.dumps({"name": "big", "datasets": ["synthetic"], "variants": ["teacher"], "training_types": ["evaluation"], "seeds": list(range(40)), "sweep": {"fusion.teacher.gamma": [0.1, 0.3, 0.5]}, "max_jobs": 100}))
    proc = snakemake(["-n", "--configfile", str(spec)], tmp_path, check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "more than max_jobs 100" in output and "study.json" in output, output[-3000:]
    assert not (tmp_path / "experiment_runs").exists()


def test_the_dry_run_lists_the_points_and_what_they_share(tmp_path):
    spec = tmp_path / "study.json"
    spec.write_text(json.dumps({"name": "gamma", "datasets": ["synthetic"], "variants": ["teacher"], "training_types": ["evaluation"], "seeds": [0, 1], "sweep": {"fusion.teacher.gamma": [0.2, 0.5]}}))
    proc = snakemake(["-n", "--configfile", str(spec)], tmp_path)
    assert "canids: study of 4 points (1 swept setting(s) x 2 seed(s))" in proc.stderr
    assert "shared by several points" in proc.stderr
    assert job_counts(proc.stdout) == {"preprocess": 1, "generate_synthetic": 1, "autoencoder": 2, "curriculum": 2, "fusion": 4, "onboarding": 4, "evaluation": 4, "study": 1, "all": 1, "total": 20}


def test_slurm_job_arrays_with_too_few_job_slots_are_refused_before_any_job(slurm_cluster, tmp_path):
    """The plugin drops array jobs it is offered in part and hangs (its issue #473): --jobs must cover the run."""
    spec = tmp_path / "study.json"
    spec.write_text(json.dumps({"name": "arrays", "datasets": ["synthetic"], "variants": ["teacher"], "training_types": ["evaluation"], "seeds": [0, 1, 2]}))
    args = ["--profile", str(REPO / "profiles" / "slurm"), "--slurm-array-jobs", "all", "--jobs", "4", "--configfile", str(spec)]
    proc = snakemake(args, tmp_path, env=slurm_submit_env(slurm_cluster), timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "--slurm-array-jobs all with --jobs 4" in output and "expected --jobs" in output, output[-3000:]
    assert "submitted" not in output and not (tmp_path / "experiment_runs").exists()


# ------------------------------------------------------------------ the table's statistics


def _write_metrics(root: Path, variant: str, run: str, f1_by_split: dict[str, float], seed: int) -> None:
    path = Path(Layout(str(root)).target("synthetic", variant, "evaluation", run))
    path.parent.mkdir(parents=True, exist_ok=True)
    splits = {split: {"fusion": {"f1": f1, "precision": f1 / 2, "recall": 1.0, "auroc": None, "false_alarms_per_hour": 10.0 * seed}} for split, f1 in f1_by_split.items()}
    path.write_text(json.dumps({"dataset": "synthetic", "variant": variant, "study": {"run": run, "seed": seed}, "splits": splits}))


@pytest.fixture
def table_root(tmp_path) -> tuple[Path, dict]:
    """A study's metrics.json files with known values: teacher and student_kd, seeds 0-4, one seed of student_kd missing."""
    rng = np.random.default_rng(0)
    values = {"teacher": rng.uniform(0.6, 0.95, 5), "student_kd": rng.uniform(0.5, 0.9, 5)}
    for variant, f1s in values.items():
        for seed, f1 in enumerate(f1s):
            if variant == "student_kd" and seed == 3:
                continue  # failed
            _write_metrics(tmp_path, variant, f"+training.seed={seed}" if seed else "", {"test_01": float(f1)}, seed)
    return tmp_path, values


def test_mean_sd_and_interval_are_students_t_over_seeds(table_root):
    root, values = table_root
    groups = {(g.variant, g.metric): g for g in tables.study_rows(tables.collect(root))}
    g = groups[("teacher", "f1")]
    x = values["teacher"]
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert g.n == 5 and math.isclose(g.mean, x.mean()) and math.isclose(g.sd, x.std(ddof=1))
    assert np.allclose(g.ci95, (max(low, 0), min(high, 1)))
    assert groups[("teacher", "auroc")].n == 0  # recorded as null: no value, not a zero


def test_a_failed_seed_is_listed_missing_not_averaged_away(table_root):
    root, values = table_root
    g = next(g for g in tables.study_rows(tables.collect(root)) if (g.variant, g.metric) == ("student_kd", "f1"))
    kept = np.delete(values["student_kd"], 3)
    assert g.n == 4 and g.missing == [3] and math.isclose(g.mean, kept.mean())
    assert "4 (missing seeds 3)" in tables.render([g], "md")


def test_the_paired_comparison_pairs_by_seed(table_root):
    root, values = table_root
    rows = tables.paired(tables.study_rows(tables.collect(root)), ("teacher", ""), ("student_kd", ""))
    row = next(r for r in rows if r["metric"] == "f1")
    a, b = np.delete(values["teacher"], 3), np.delete(values["student_kd"], 3)
    assert row["pairs"] == 4
    assert math.isclose(row["mean_difference"], (a - b).mean(), abs_tol=1e-6)
    assert math.isclose(row["p_value"], stats.ttest_rel(a, b).pvalue, rel_tol=1e-4)
    low, high = stats.t.interval(0.95, 3, loc=(a - b).mean(), scale=stats.sem(a - b))
    assert math.isclose(row["ci95_low"], low, abs_tol=1e-6) and math.isclose(row["ci95_high"], high, abs_tol=1e-6)


def test_every_format_carries_the_same_numbers(table_root, capsys):
    root, values = table_root
    mean = values["teacher"].mean()
    outputs = {}
    for fmt in tables.FORMATS:
        assert canids_main(["results", "--root", str(root), "--table", "--format", fmt, "--metrics", "f1", "--compare", str(REPO / "docs" / "anchors.csv")]) == 0
        outputs[fmt] = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    teacher = next(r for r in rows if r["variant"] == "teacher")
    assert math.isclose(float(teacher["mean"]), mean, abs_tol=1e-6) and teacher["n"] == "5"
    data = json.loads(outputs["json"])
    assert "Student's t" in data["confidence_interval"]
    assert any(r["variant"] == "student_kd" and r["missing_seeds"] == [3] for r in data["rows"])
    assert f"{mean:.4f}" in outputs["md"] and f"{mean:.4f}" in outputs["latex"] and r"\begin{tabular}" in outputs["latex"]


def test_published_anchors_cite_their_source():
    rows = tables.anchors(REPO / "docs" / "anchors.csv")
    assert len(rows) == 24
    assert all(r["citation"] and r["value"] and 0 <= float(r["value"]) <= 1 for r in rows)
    kd = {(r["dataset"], r["split"]): float(r["value"]) for r in rows if r["source"] == "kd_gat_student"}
    assert kd[("set_02", "test_01_known_vehicle_known_attack")] == 0.2442


def test_a_table_of_a_root_without_finished_runs_names_the_root(tmp_path, capsys):
    assert canids_main(["results", "--root", str(tmp_path), "--table"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "evaluation/metrics.json" in err


def test_an_unknown_pair_names_what_exists(table_root, capsys):
    root, _ = table_root
    assert canids_main(["results", "--root", str(root), "--pair", "student", "teacher"]) == 1
    err = capsys.readouterr().err
    assert "student_kd" in err and "teacher" in err


# ------------------------------------------------------------------ a real study


STUDY = {"name": "seeds", "datasets": ["synthetic"], "variants": ["teacher"], "training_types": ["evaluation"], "seeds": [0, 1], "sweep": {"fusion.teacher.gamma": [0.2, 0.6]}}


@pytest.fixture(scope="module")
def study_run(tmp_path_factory, tiny_config_file) -> Path:
    """A real study at tiny size: 2 seeds x 2 fusion settings of the teacher."""
    workdir = tmp_path_factory.mktemp("study_run")
    (workdir / "study.json").write_text(json.dumps(STUDY))
    snakemake(["--cores", "2", "--configfile", str(tiny_config_file), str(workdir / "study.json")], workdir)
    return workdir


def test_a_study_trains_each_shared_stage_once_and_tabulates_every_point(study_run):
    root = study_run / "experiment_runs" / "synthetic"
    assert sorted(p.parent.parent.name for p in root.glob("*/autoencoder/manifest.json")) == ["teacher", "teacher+training.seed=1"]
    assert len(list(root.glob("*/fusion/manifest.json"))) == 4
    seeds = {load_json(p)["hyperparameters"]["seed"] for p in root.glob("*/curriculum/manifest.json")}
    assert seeds == {0, 1}
    fusion = load_json(root / "teacher+fusion.teacher.gamma=0.6+training.seed=1" / "fusion" / "manifest.json")
    assert fusion["hyperparameters"]["gamma"] == 0.6 and fusion["hyperparameters"]["seed"] == 1
    upstream = {u["stage"]: u["path"] for u in fusion["upstream"]}
    assert "teacher+training.seed=1/curriculum" in upstream["curriculum"]  # the shared GAT of its seed
    layout = Layout(str(study_run / "experiment_runs"))
    for artifact in STUDY_FILES:
        assert Path(layout.study("seeds", artifact)).stat().st_size > 0
    table = json.loads(Path(layout.study("seeds", "table_json")).read_text())
    row = next(r for r in table["rows"] if r["model"] == "fusion" and r["metric"] == "f1" and r["point"] == "fusion.teacher.gamma=0.6" and r["split"].startswith("test_01"))
    per_seed = [load_json(root / f"teacher+fusion.teacher.gamma=0.6{s}" / "evaluation" / "metrics.json")["splits"][row["split"]]["fusion"]["f1"] for s in ("", "+training.seed=1")]
    assert row["n"] == 2 and row["seeds"] == [0, 1] and math.isclose(row["mean"], np.mean(per_seed), abs_tol=1e-6)


def test_the_report_shows_the_study_table_and_spread(study_run, tiny_config_file, tmp_path):
    report = tmp_path / "report.zip"
    snakemake(["--report", str(report), "--configfile", str(tiny_config_file), str(study_run / "study.json")], study_run)
    import zipfile

    names = zipfile.ZipFile(report).namelist()
    assert any(n.endswith("seed_spread.png") for n in names) and any(n.endswith("table.csv") for n in names), names



def test_a_killed_study_finishes_only_what_is_missing(study_run, tiny_config_file, capsys):
    root = study_run / "experiment_runs" / "synthetic"
    shutil.rmtree(root / "teacher+fusion.teacher.gamma=0.6+training.seed=1" / "evaluation")  # as if killed before it finished
    spec = str(study_run / "study.json")
    assert canids_main(["results", "--root", str(study_run / "experiment_runs"), "--table", "--spec", spec, "--models", "fusion", "--metrics", "f1"]) == 0
    table = capsys.readouterr().out
    assert "| teacher | fusion.teacher.gamma=0.6 | f1 | 1 (missing seeds 1) |" in table
    proc = snakemake(["-n", "--configfile", str(tiny_config_file), spec], study_run)
    assert job_counts(proc.stdout) == {"evaluation": 1, "study": 1, "all": 1, "total": 3}, proc.stdout

