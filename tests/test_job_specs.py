"""Job specs and dependency manifests, without Snakemake: every bad input fails with a message
that names the file, the field and the expected form; pins replace the workflow's own outputs."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from canids.cli import main as cli
from canids.settings import EXTRA_ARGS, load_settings, to_plain
from canids.shape import SIZES, STAGE_NAMES, file_name
from canids.util import sha256_file
from canids.workflow.config import ConfigSources, JobSpecError, load_spec, validate_spec, workflow_settings
from canids.workflow.dag import Pipeline
from canids.workflow.export import export_bundle
from canids.workflow.manifest import load_manifest, write_manifest
from canids.workflow.pins import pinnable

from conftest import REPO

BASE_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SPEC_LABEL = "jobs/x.json"
GOOD = {"name": "my_job", "datasets": ["hcrl_sa"], "training_types": ["autoencoder"], "extra_args": {"epochs": 5, "batch_size": 16}}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Relative templates resolve against tmp_path; the caller's experiment root never leaks in."""
    monkeypatch.delenv("CAN_EXPERIMENT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)


def spec_error(spec: object, label: str = SPEC_LABEL) -> str:
    with pytest.raises(JobSpecError) as err:
        validate_spec(spec, label)
    return str(err.value)


def pipeline(root: Path, **spec) -> Pipeline:
    """What the Snakefile builds at parse time for config/config.yaml + this spec."""
    config = copy.deepcopy(BASE_CONFIG)
    update_config(config, copy.deepcopy(spec))
    config["experiment_root"] = str(root)
    return Pipeline.from_settings(load_settings(config), ConfigSources([(SPEC_LABEL, spec)]))


def pipeline_error(root: Path, **spec) -> str:
    with pytest.raises(JobSpecError) as err:
        pipeline(root, **spec)
    return str(err.value)


def fake_run(root: Path, dataset: str = "hcrl_sa", variant: str = "teacher", stages=("preprocess", "autoencoder", "curriculum", "fusion")) -> dict[str, Path]:
    """Stage manifests with real sha256-pinned (dummy) artifacts, each listing its upstream like train.py does."""
    out, upstream = {}, []
    for stage in stages:
        d = root / dataset / "preprocess" if stage == "preprocess" else root / dataset / variant / stage
        arts = {name: d / file_name("preprocess", name) for name in ("train_graphs", "test_graphs")} if stage == "preprocess" else {"checkpoint": d / "model.ckpt"}
        for name, path in arts.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{dataset}/{variant}/{stage}/{name}".encode() * 64)
        write_manifest(d / "manifest.json", dataset=dataset, stage=stage, variant=None if stage == "preprocess" else variant, artifacts=arts, hyperparameters={}, upstream=list(upstream), data_fingerprint={"sha256": "0" * 64, "n_files": 0}, wall_time_s=1.0, metrics={})
        upstream.append(load_manifest(d / "manifest.json"))
        out[stage] = d / "manifest.json"
    return out


def write_bundle(path: Path, manifests: dict[str, str], dataset: str = "hcrl_sa", variant: str = "teacher", **extra) -> Path:
    path.write_text(json.dumps({"kind": "canids-dependency-bundle", "dataset": dataset, "variant": variant, "manifests": manifests, **extra}))
    return path


# ------------------------------------------------------------------------------ spec fields


def test_good_spec_and_the_issue_example_are_valid(tmp_path):
    validate_spec(GOOD, SPEC_LABEL)
    example = {"name": "my_job", "datasets": "all", "training_types": ["autoencoder"], "extra_args": {"epochs": 5, "batch_size": 16}, "dependency_manifests": {"default": "/project/manifests/{dataset}_manifest.json"}}
    validate_spec(example, SPEC_LABEL)


def test_invalid_json_names_file_line_and_column(tmp_path):
    bad = tmp_path / "jobs" / "broken.json"
    bad.parent.mkdir()
    bad.write_text('{"name": "x",\n "datasets": ["hcrl_sa"]\n "training_types": ["fusion"]}')
    with pytest.raises(JobSpecError, match=r"broken\.json: not valid JSON: Expecting ',' delimiter at line 3, column 2"):
        load_spec(bad)
    bad.write_text('{"name": "x", "name": "y"}')
    with pytest.raises(JobSpecError, match=r"broken\.json: not valid JSON: duplicate key 'name'"):
        load_spec(bad)


def test_not_an_object():
    assert "x.json: expected a JSON object with the keys of a job spec" in spec_error(["autoencoder"])


def test_missing_name():
    spec = {k: v for k, v in GOOD.items() if k != "name"}
    assert spec_error(spec) == "jobs/x.json: name: missing required field; expected a job name of letters, digits, '_', '.' or '-' such as \"my_job\""


def test_bad_name_is_rejected():
    assert "jobs/x.json: name: expected a job name" in spec_error({**GOOD, "name": "../etc"})


def test_empty_dataset_list():
    msg = spec_error({**GOOD, "datasets": []})
    assert msg == "jobs/x.json: datasets: expected \"all\" or a non-empty list of dataset names from the catalog (config/datasets.yaml) such as [\"hcrl_sa\"], got []"


def test_unknown_dataset(tmp_path):
    msg = pipeline_error(tmp_path, **{**GOOD, "datasets": ["hcrl_sa", "hcrl_xx"]})
    assert msg.startswith("jobs/x.json: datasets[1]: unknown dataset 'hcrl_xx'; expected \"all\" or one of hcrl_ch, hcrl_sa, set_01")


def test_all_means_the_six_automotive_datasets(tmp_path):
    assert pipeline(tmp_path, **{**GOOD, "datasets": "all"}).datasets() == ["hcrl_ch", "hcrl_sa", "set_01", "set_02", "set_03", "set_04"]


def test_unknown_training_type():
    msg = spec_error({**GOOD, "training_types": ["autoencoder", "pretrain"]})
    assert msg == f"jobs/x.json: training_types[1]: expected one of {', '.join(STAGE_NAMES)}, got 'pretrain'"


def test_training_types_in_any_order_make_the_targets(tmp_path):
    p = pipeline(tmp_path, **{**GOOD, "training_types": ["evaluation", "autoencoder"], "variant": "student"})
    assert p.targets() == [f"{tmp_path}/hcrl_sa/student/evaluation/metrics.json", f"{tmp_path}/hcrl_sa/student/autoencoder/manifest.json"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("epochs", "5; rm -rf ~", "extra_args.epochs: expected an integer >= 1 and <= 10000, got '5; rm -rf ~'"),
        ("epochs", 5.0, "extra_args.epochs: expected an integer >= 1 and <= 10000, got 5.0"),
        ("epochs", True, "extra_args.epochs: expected an integer >= 1 and <= 10000, got true"),
        ("epochs", 0, "extra_args.epochs: expected an integer >= 1 and <= 10000, got 0"),
        ("epochs", 10**6, "extra_args.epochs: expected an integer >= 1 and <= 10000, got 1000000"),
        ("batch_size", [16], "extra_args.batch_size: expected an integer >= 1 and <= 1000000, got [16]"),
        ("optimize_batch_size", "yes", "extra_args.optimize_batch_size: expected true or false, got 'yes'"),
        ("learning_rate", "0.01", "extra_args.learning_rate: expected a number > 0 and <= 10, got '0.01'"),
        ("learning_rate", float("nan"), "extra_args.learning_rate: expected a number > 0 and <= 10, got nan"),
        ("learning_rate", float("inf"), "extra_args.learning_rate: expected a number > 0 and <= 10, got inf"),
        ("window_size", 1, "extra_args.window_size: expected an integer >= 2 and <= 100000, got 1"),
        ("seed", -1, "extra_args.seed: expected an integer >= 0 and <= 4294967295, got -1"),
        ("seed", 2**32, "extra_args.seed: expected an integer >= 0 and <= 4294967295, got 4294967296"),
        ("teacher_path", 3, "extra_args.teacher_path: expected a non-empty path template"),
        ("dependency_manifest", "", "extra_args.dependency_manifest: expected a non-empty manifest path template"),
        ("accelerator", "tpu", "extra_args.accelerator: expected one of auto, cpu, cuda, got 'tpu'"),
    ],
)
def test_extra_args_of_the_wrong_type(key, value, expected):
    assert f"jobs/x.json: {expected}" in spec_error({**GOOD, "extra_args": {key: value}})


def test_unknown_extra_args_key_lists_the_allowed_ones():
    msg = spec_error({**GOOD, "extra_args": {"epoch": 5}})
    allowed = ", ".join(sorted(EXTRA_ARGS))
    assert msg == f"jobs/x.json: extra_args.epoch: unknown key 'epoch'; allowed keys: {allowed}"


def test_unknown_top_level_key():
    assert "jobs/x.json: extra_arg: unknown key 'extra_arg'; allowed keys: autoencoder, catalog, curriculum" in spec_error({**GOOD, "extra_arg": {}})


def test_every_problem_is_listed_at_once():
    msg = spec_error({"datasets": [], "training_types": ["x"], "extra_args": {"epochs": "5"}})
    assert msg.splitlines()[0] == "invalid job spec:" and len(msg.splitlines()) == 5


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("extra_args", "dependency_manifests"):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("key", sorted(k for k, targets in EXTRA_ARGS.items() if targets))
def test_each_extra_arg_sets_every_setting_it_names_and_nothing_else(key):
    """What a stage trains with (load_settings) changes exactly where EXTRA_ARGS says."""
    value = {"accelerator": "cpu", "optimize_batch_size": False, "teacher_path": "/teachers/{dataset}", "learning_rate": 0.125}.get(key, 3)
    validate_spec({**GOOD, "extra_args": {key: value}}, SPEC_LABEL)
    before = dict(_leaves(to_plain(load_settings(BASE_CONFIG))))
    after = dict(_leaves(to_plain(load_settings({**BASE_CONFIG, "extra_args": {key: value}}))))
    changed = {path for path in before if before[path] != after[path] and path != "extra_args"}
    expected = {t.replace("*", size) for t in EXTRA_ARGS[key] for size in SIZES}
    assert all(after[path] == value for path in expected), key
    assert changed <= expected and changed, (key, changed)


def test_no_spec_value_reaches_a_shell():
    """Rules run Python scripts (no `shell:`/`run:` with config values), and typed fields reject strings."""
    for smk in (REPO / "workflow").rglob("*.smk"):
        text = smk.read_text()
        assert not re.search(r"^\s*(shell|run):", text, re.M), smk
    assert "got '5; rm -rf ~'" in spec_error({**GOOD, "extra_args": {"epochs": "5; rm -rf ~"}})


def test_config_layers_are_checked_and_named(tmp_path):
    spec = tmp_path / "jobs" / "a.json"
    spec.parent.mkdir()
    spec.write_text(json.dumps(GOOD))
    other = tmp_path / "tiny.yaml"
    other.write_text("extra_args: {steps: many}\n")

    def layers(files, cli_config=None):
        config = copy.deepcopy(BASE_CONFIG)
        for f in files:
            update_config(config, json.loads(f.read_text()) if f.suffix == ".json" else yaml.safe_load(f.read_text()))
        update_config(config, copy.deepcopy(cli_config or {}))
        return workflow_settings(config, files, cli_config)

    with pytest.raises(JobSpecError, match=r"^tiny\.yaml: extra_args\.steps: expected an integer >= 1 and <= 10000000, got 'many'$"):
        layers([spec.absolute(), other.absolute()])
    with pytest.raises(JobSpecError, match=r"^--config: variant: expected one of teacher, student, student_kd \(or null\), got 'huge'$"):
        layers([spec.absolute()], {"variant": "huge"})
    settings, sources = layers([spec.absolute()], {"variant": "student"})
    assert settings.selected_variants() == ["student"] and settings.autoencoder.teacher.epochs == 5
    assert sources.origin("extra_args") == "jobs/a.json" and sources.origin("variant") == "--config" and sources.origin("synthetic") == "config/config.yaml"


def test_nested_command_line_values_get_the_type_their_setting_declares():
    """`--config preprocess='{window_size: 50}'` arrives as {"window_size": "50"} (YAML base loader)."""
    config = copy.deepcopy(BASE_CONFIG)
    cli_layer = {"preprocess": {"window_size": "50", "strict": "false"}, "extra_args": {"epochs": "2", "learning_rate": "1e-3"}, "distillation": {"teacher_path": "null"}}
    update_config(config, copy.deepcopy(cli_layer))
    settings, _ = workflow_settings(config, [], cli_layer)
    assert settings.preprocess.window_size == 50 and settings.preprocess.strict is False
    assert settings.autoencoder.student.epochs == 2 and settings.fusion.teacher.learning_rate == 1e-3
    assert config["preprocess"]["window_size"] == 50  # the jobs see the typed value too
    bad = {"preprocess": {"window_size": "fifty"}}
    update_config(config, copy.deepcopy(bad))
    with pytest.raises(JobSpecError, match=r"^--config: preprocess\.window_size: expected an integer >= 2 and <= 100000, got 'fifty'$"):
        workflow_settings(config, [], bad)


def test_non_finite_numbers_in_a_json_spec_are_refused(tmp_path):
    for text, what in (('{"name": "x", "datasets": ["hcrl_sa"], "training_types": ["fusion"], "fusion": {"teacher": {"gamma": NaN}}}', "NaN"), ('{"name": "x", "extra_args": {"learning_rate": Infinity}}', "Infinity")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(JobSpecError, match=rf"bad\.json: not valid JSON: {what} is not a number JSON allows"):
            load_spec(bad)
    huge = tmp_path / "huge.json"
    huge.write_text('{"name": "x", "datasets": ["hcrl_sa"], "training_types": ["fusion"], "fusion": {"teacher": {"gamma": 1e999}}}')
    with pytest.raises(JobSpecError, match=r"huge\.json: fusion\.teacher\.gamma: expected a number >= 0 and <= 1, got inf"):
        load_spec(huge)


def test_example_specs_and_bundles_are_valid():
    specs = sorted((REPO / "jobs").glob("*.json"))
    assert {p.stem for p in specs} >= {"example_vgae", "example_gat", "example_fusion", "example_pipeline"}
    for path in specs:
        load_spec(path)
    assert cli(["spec", "check", "--skip-manifests", *map(str, specs)]) == 0
    bundle_schema = json.loads((REPO / "workflow/schemas/dependency_bundle.schema.json").read_text())
    import jsonschema

    for name in ("hcrl_sa", "hcrl_ch"):
        data = json.loads((REPO / f"docs/examples/manifests/{name}_manifest.json").read_text())
        jsonschema.validate(data, bundle_schema)
        assert data["dataset"] == name and all(p.startswith("{experiment_root}/") for p in data["manifests"].values())


def test_spec_check_cli_reports_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**GOOD, "extra_args": {"epochs": "5; rm -rf ~"}}))
    assert cli(["spec", "check", str(bad)]) == 1
    assert f"{bad}: extra_args.epochs: expected an integer >= 1 and <= 10000, got '5; rm -rf ~'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ templates


def test_default_template_without_dataset_for_several_datasets(tmp_path):
    msg = pipeline_error(tmp_path, **{**GOOD, "datasets": ["hcrl_sa", "hcrl_ch"], "dependency_manifests": {"default": "/project/manifests/manifest.json"}})
    assert msg.startswith("jobs/x.json: dependency_manifests.default: template '/project/manifests/manifest.json' has no {dataset} placeholder but applies to 2 datasets (hcrl_sa, hcrl_ch); expected a template with {dataset}")


def test_default_template_without_dataset_is_fine_for_one_dataset_left(tmp_path):
    run = fake_run(tmp_path / "runs", "hcrl_sa", stages=("preprocess",))
    other = fake_run(tmp_path / "runs", "hcrl_ch", stages=("preprocess",))
    p = pipeline(tmp_path, **{**GOOD, "datasets": ["hcrl_sa", "hcrl_ch"], "dependency_manifests": {"default": str(run["preprocess"]), "hcrl_ch": str(other["preprocess"])}})
    assert p.upstream("hcrl_sa", None, "preprocess") == str(run["preprocess"])
    assert p.upstream("hcrl_ch", None, "preprocess") == str(other["preprocess"])


def test_unknown_placeholder_and_unknown_dataset_key(tmp_path):
    msg = pipeline_error(tmp_path, **{**GOOD, "dependency_manifests": {"default": "/m/{datset}.json"}})
    assert msg == "jobs/x.json: dependency_manifests.default: unknown placeholder(s) {datset} in '/m/{datset}.json'; expected only {dataset}, {experiment_root}"
    msg = pipeline_error(tmp_path, **{**GOOD, "dependency_manifests": {"hcrl_xx": "/m.json"}})
    assert msg.startswith("jobs/x.json: dependency_manifests.hcrl_xx: unknown dataset 'hcrl_xx'; expected \"default\" or one of hcrl_ch")


def test_manifest_path_that_does_not_exist(tmp_path):
    msg = pipeline_error(tmp_path, **{**GOOD, "dependency_manifests": {"default": "{experiment_root}/pins/{dataset}.json"}})
    assert msg == f"jobs/x.json: dependency_manifests.default: manifest for dataset 'hcrl_sa' not found: {tmp_path}/pins/hcrl_sa.json; expected a stage manifest or a dependency bundle (kind 'canids-dependency-bundle')"


def test_extra_args_dependency_manifest_is_the_default_template(tmp_path):
    run = fake_run(tmp_path, stages=("preprocess",))
    p = pipeline(tmp_path, **{**GOOD, "extra_args": {"dependency_manifest": str(run["preprocess"])}})
    assert p.upstream("hcrl_sa", "teacher", "preprocess") == str(run["preprocess"])
    msg = pipeline_error(tmp_path, **{**GOOD, "extra_args": {"dependency_manifest": "/a.json"}, "dependency_manifests": {"default": "/b.json"}})
    assert "extra_args.dependency_manifest: '/a.json' conflicts with dependency_manifests.default '/b.json'" in msg


# ------------------------------------------------------------------------------ pins


def test_pinnable_stages_follow_the_dag():
    assert pinnable(["teacher"], ["fusion"]) == {("preprocess", None), ("autoencoder", "teacher"), ("curriculum", "teacher")}
    assert pinnable(["teacher"], ["autoencoder", "curriculum", "fusion", "onboarding", "evaluation"]) == {("preprocess", None)}
    assert ("onboarding", "teacher") in pinnable(["teacher"], ["evaluation"])
    assert ("onboarding", "teacher") not in pinnable(["teacher"], ["fusion", "evaluation"])  # it reads the fusion the job retrains
    assert ("fusion", "teacher") in pinnable(["student_kd"], ["fusion"])  # the distillation teacher


def test_bundle_pins_replace_upstream_outputs(tmp_path):
    runs = tmp_path / "last_month"
    run = fake_run(runs)
    (tmp_path / "pins").mkdir()
    # paths absolute or relative to the bundle file; the spec's template is relative to the working directory
    write_bundle(tmp_path / "pins" / "hcrl_sa.json", {"preprocess": str(run["preprocess"]), "autoencoder": "../last_month/{dataset}/{variant}/autoencoder/manifest.json", "curriculum": str(run["curriculum"]), "fusion": str(run["fusion"])})
    p = pipeline(tmp_path / "new_root", **{**GOOD, "training_types": ["fusion"], "dependency_manifests": {"default": "pins/{dataset}.json"}})
    assert p.upstream("hcrl_sa", "teacher", "autoencoder") == str(run["autoencoder"])
    assert p.upstream("hcrl_sa", "teacher", "curriculum", "checkpoint") == str(run["curriculum"].parent / "model.ckpt")
    assert p.upstream("hcrl_sa", None, "preprocess") == str(run["preprocess"])
    assert p.is_pinned(str(run["autoencoder"].parent / "model.ckpt"))
    assert sorted(p.pins) == [("hcrl_sa", "autoencoder", "teacher"), ("hcrl_sa", "curriculum", "teacher"), ("hcrl_sa", "preprocess", None)]  # fusion: built here
    assert p.targets() == [f"{tmp_path}/new_root/hcrl_sa/teacher/fusion/manifest.json"]
    assert p.stage_path("hcrl_sa", "teacher", "fusion") == f"{tmp_path}/new_root/hcrl_sa/teacher/fusion/manifest.json"
    assert not p.is_pinned(p.stage_path("hcrl_sa", "teacher", "fusion"))


def test_teacher_pins_feed_student_kd(tmp_path):
    run = fake_run(tmp_path)
    bundle = write_bundle(tmp_path / "b.json", {s: str(m) for s, m in run.items()})
    p = pipeline(tmp_path, **{**GOOD, "variant": "student_kd", "training_types": ["fusion"], "dependency_manifests": {"hcrl_sa": str(bundle)}})
    assert p.teacher("hcrl_sa", "student_kd", "fusion") == [str(run["fusion"])]
    assert p.teacher("hcrl_sa", "student_kd", "autoencoder", "checkpoint") == [str(run["autoencoder"].parent / "model.ckpt")]
    assert p.upstream("hcrl_sa", "student_kd", "autoencoder") == f"{tmp_path}/hcrl_sa/student_kd/autoencoder/manifest.json"  # the student is trained


def test_tampered_artifact_is_refused_with_both_digests(tmp_path):
    run = fake_run(tmp_path)
    ckpt = run["autoencoder"].parent / "model.ckpt"
    expected = sha256_file(ckpt)
    ckpt.write_bytes(ckpt.read_bytes() + b"tampered")
    bundle = write_bundle(tmp_path / "b.json", {s: str(m) for s, m in run.items()})
    msg = pipeline_error(tmp_path / "new", **{**GOOD, "training_types": ["fusion"], "dependency_manifests": {"default": str(bundle)}})
    assert msg.startswith(f"jobs/x.json: dependency_manifests.default: bundle {bundle}: manifests.autoencoder: {run['autoencoder']}: artifact 'checkpoint' ({ckpt}) does not match its manifest")
    assert f"expected sha256 {expected}, found {sha256_file(ckpt)}" in msg


def test_missing_artifact_is_refused(tmp_path):
    run = fake_run(tmp_path, stages=("preprocess",))
    (run["preprocess"].parent / file_name("preprocess", "test_graphs")).unlink()
    msg = pipeline_error(tmp_path / "new", **{**GOOD, "dependency_manifests": {"default": str(run["preprocess"])}})
    assert "artifact 'test_graphs' missing" in msg and str(run["preprocess"]) in msg


def test_manifest_for_another_dataset(tmp_path):
    run = fake_run(tmp_path, dataset="hcrl_ch")
    msg = pipeline_error(tmp_path, **{**GOOD, "dependency_manifests": {"hcrl_sa": str(run["preprocess"])}})
    assert msg == f"jobs/x.json: dependency_manifests.hcrl_sa: {run['preprocess']}: manifest is for dataset 'hcrl_ch', expected dataset 'hcrl_sa'"
    bundle = write_bundle(tmp_path / "b.json", {"preprocess": str(run["preprocess"])}, dataset="hcrl_ch")
    msg = pipeline_error(tmp_path, **{**GOOD, "dependency_manifests": {"hcrl_sa": str(bundle)}})
    assert msg == f"jobs/x.json: dependency_manifests.hcrl_sa: bundle {bundle} is for dataset 'hcrl_ch', expected dataset 'hcrl_sa'"


def test_manifest_for_another_stage(tmp_path):
    run = fake_run(tmp_path)
    # an autoencoder job reads only preprocess: a curriculum manifest is of no use to it
    msg = pipeline_error(tmp_path, **{**GOOD, "dependency_manifests": {"default": str(run["curriculum"])}})
    assert msg == f"jobs/x.json: dependency_manifests.default: manifest {run['curriculum']} is for stage 'teacher/curriculum', which this job does not read or builds itself; expected a manifest for one of: preprocess"
    # a bundle entry that is another stage's manifest
    bundle = write_bundle(tmp_path / "b.json", {"preprocess": str(run["preprocess"]), "autoencoder": str(run["curriculum"])})
    msg = pipeline_error(tmp_path, **{**GOOD, "training_types": ["curriculum"], "dependency_manifests": {"default": str(bundle)}})
    assert msg == f"jobs/x.json: dependency_manifests.default: bundle {bundle}: manifests.autoencoder: {run['curriculum']}: manifest is for stage 'curriculum', expected stage 'autoencoder'"


def test_bundle_for_another_variant_or_with_nothing_to_pin(tmp_path):
    run = fake_run(tmp_path, variant="student")
    bundle = write_bundle(tmp_path / "b.json", {s: str(m) for s, m in run.items()}, variant="student")
    msg = pipeline_error(tmp_path, **{**GOOD, "training_types": ["fusion"], "dependency_manifests": {"default": str(bundle)}})
    assert msg == f"jobs/x.json: dependency_manifests.default: bundle {bundle} is for variant 'student', but this job builds teacher; expected a bundle for one of: teacher"
    only_fusion = write_bundle(tmp_path / "f.json", {"fusion": str(run["fusion"])}, variant="student")
    msg = pipeline_error(tmp_path, **{**GOOD, "variant": "student", "training_types": ["fusion"], "dependency_manifests": {"default": str(only_fusion)}})
    assert "pins nothing this job reads (it has fusion of student); expected one of: preprocess, student/autoencoder, student/curriculum" in msg


def test_bad_bundle_names_its_field(tmp_path):
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps({"kind": "bundle", "dataset": "hcrl_sa", "variant": "teacher", "manifests": {"gat": "x"}}))
    msg = pipeline_error(tmp_path, **{**GOOD, "dependency_manifests": {"default": str(bundle)}})
    assert f"bundle {bundle}: kind: expected \"canids-dependency-bundle\", got 'bundle'" in msg
    assert f"bundle {bundle}: manifests.gat: unknown key 'gat'; allowed keys: autoencoder, curriculum, fusion, onboarding, preprocess" in msg


def test_bundle_manifest_digest_pins_one_run(tmp_path):
    run = fake_run(tmp_path)
    bundle = write_bundle(tmp_path / "b.json", {"preprocess": str(run["preprocess"])}, manifest_sha256={"preprocess": "a" * 64})
    msg = pipeline_error(tmp_path, **{**GOOD, "dependency_manifests": {"default": str(bundle)}})
    assert f"manifest {run['preprocess']} does not match the bundle: expected sha256 {'a' * 64}, found {sha256_file(run['preprocess'])}" in msg


def test_bundle_mixing_two_runs_is_refused(tmp_path):
    old, new = fake_run(tmp_path / "old"), fake_run(tmp_path / "new")
    bundle = write_bundle(tmp_path / "b.json", {"preprocess": str(old["preprocess"]), "autoencoder": str(old["autoencoder"]), "curriculum": str(new["curriculum"])})
    msg = pipeline_error(tmp_path, **{**GOOD, "training_types": ["fusion"], "dependency_manifests": {"default": str(bundle)}})
    # which upstream disagrees first (preprocess or autoencoder) depends on whether the two
    # fake runs' preprocess manifests happen to be byte-identical (same created_at second)
    stage = "autoencoder" if sha256_file(old["preprocess"]) == sha256_file(new["preprocess"]) else "preprocess"
    assert f"{new['curriculum']} was trained on {stage} manifest sha256 {sha256_file(new[stage])}, but" in msg
    assert f"pins {old[stage]} with sha256 {sha256_file(old[stage])}; expected manifests of one run" in msg


def test_pinned_stage_whose_upstream_would_be_retrained_is_refused(tmp_path):
    run = fake_run(tmp_path)
    bundle = write_bundle(tmp_path / "b.json", {"preprocess": str(run["preprocess"]), "fusion": str(run["fusion"])})
    msg = pipeline_error(tmp_path / "new", **{**GOOD, "training_types": ["evaluation"], "dependency_manifests": {"default": str(bundle)}})
    assert "pins fusion" in msg and "but this job would retrain its upstream autoencoder" in msg


# ------------------------------------------------------------------------------ export


def test_export_bundle_roundtrip(tmp_path, capsys):
    root = tmp_path / "runs"
    run = fake_run(root, stages=("preprocess", "autoencoder", "curriculum"))
    out = tmp_path / "export.json"
    assert cli(["export-manifest", "--dataset", "hcrl_sa", "--variant", "teacher", "--root", str(root), "--out", str(out), "--relative-to-root"]) == 0
    data = json.loads(out.read_text())
    assert data["manifests"] == {"preprocess": "{experiment_root}/hcrl_sa/preprocess/manifest.json", "autoencoder": "{experiment_root}/hcrl_sa/teacher/autoencoder/manifest.json", "curriculum": "{experiment_root}/hcrl_sa/teacher/curriculum/manifest.json"}
    assert data["manifest_sha256"]["curriculum"] == sha256_file(run["curriculum"])
    # {experiment_root} is the new run's root: the bundle pins that root's teacher
    p = pipeline(root, **{**GOOD, "training_types": ["fusion"], "dependency_manifests": {"default": str(out)}})
    assert p.upstream("hcrl_sa", "teacher", "curriculum") == str(run["curriculum"])
    absolute = export_bundle(root, "hcrl_sa", "teacher", tmp_path / "abs.json")
    assert absolute["manifests"]["autoencoder"] == str(run["autoencoder"])


def test_export_refuses_a_tampered_or_missing_run(tmp_path, capsys):
    root = tmp_path / "runs"
    run = fake_run(root, stages=("preprocess", "autoencoder"))
    (run["autoencoder"].parent / "model.ckpt").write_bytes(b"x")
    assert cli(["export-manifest", "--dataset", "hcrl_sa", "--variant", "teacher", "--root", str(root), "--out", str(tmp_path / "o.json")]) == 1
    assert "does not match its manifest" in capsys.readouterr().err and not (tmp_path / "o.json").exists()
    with pytest.raises(JobSpecError, match="no finished stage under"):
        export_bundle(root, "set_01", "teacher", tmp_path / "o.json")
