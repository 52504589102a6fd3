"""Every stage's job, run in this process the way Snakemake's script runs it, on a tiny dataset.

The integration tests run the same jobs through Snakemake; here each one goes through
``canids.workflow.jobs.run_job`` with a real ``snakemake.script.Snakemake`` object built from
the paths of canids.shape, so the job layer is covered by the fast suite too: inputs, typed
settings, outputs that are exactly the declared ones, manifests that verify, resume state
that is cleaned up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from snakemake.iocontainers import InputFiles, Log, OutputFiles, Params, ResourceList, Wildcards
from snakemake.script import Snakemake

from canids.graphs.shards import shard_paths
from canids.data.synthetic import generate
from canids.settings import load_settings, stage_settings
from canids.shape import STAGE_NAMES, STAGES, TEST_SPLITS, VALIDATION, shard_artifact
from canids.workflow.dag import Pipeline
from canids.workflow.jobs import run_job
from canids.workflow.manifest import load_manifest

DATASET, VARIANT = "synthetic", "teacher"
TINY = {
    "datasets": [DATASET],
    "variants": [VARIANT],
    "training_types": ["evaluation"],
    "synthetic": {"scale": 0.02},
    "training": {"accelerator": "cpu", "optimize_batch_size": False},
    "autoencoder": {"teacher": {"epochs": 2, "model": {"hidden": 8, "heads": 1, "layers": 1, "latent": 8}}},
    "curriculum": {"teacher": {"epochs": 2, "model": {"hidden": 8, "heads": 1, "layers": 1}, "curriculum": {"ramp_epochs": 1}}},
    "fusion": {"teacher": {"steps": 60, "eval_every": 20, "epsilon_decay_steps": 30, "model": {"hidden": 16, "layers": 1, "n_actions": 5}}},
}


def named(cls, mapping: dict):
    """A Snakemake io container as Snakemake builds one: a flat list with named slices
    (a name bound to a list, such as an empty ``teacher``, names a slice of it)."""
    flat, spans = [], {}
    for name, value in mapping.items():
        values = value if isinstance(value, list) else [value]
        spans[name] = (len(flat), len(flat) + len(values), isinstance(value, list))
        flat.extend(values)
    container = cls(flat)
    for name, (start, end, is_list) in spans.items():
        container._set_name(name, start, end=end if is_list else None)
    return container


def snakemake_job(pipeline: Pipeline, config: dict, stage: str) -> Snakemake:
    """What Snakemake hands the stage's script: named inputs and outputs from canids.shape."""
    spec = STAGES[stage]
    variant = VARIANT if spec.per_variant else None
    layout = pipeline.layout
    outputs = {name: layout.file(DATASET, variant, stage, name) for name in ["manifest", *spec.artifacts]}
    inputs = {"raw": pipeline.raw_inputs(DATASET)} if stage == "preprocess" else pipeline.inputs(DATASET, variant, stage)
    params = {"resume_dir": layout.resume_dir(DATASET, variant, stage)} if spec.trains else {}
    wildcards = {"dataset": DATASET, **({"variant": variant} if variant else {})}
    return Snakemake(
        named(InputFiles, {**inputs, **({"teacher": []} if spec.trains else {})}),
        named(OutputFiles, outputs),
        named(Params, params),
        named(Wildcards, wildcards),
        1,
        ResourceList(),
        Log([layout.log(DATASET, variant, stage)]),
        config,
        stage,
        None,
    )


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage_jobs")
    config = {**TINY, "experiment_root": str(root)}
    settings = load_settings(config)
    pipeline = Pipeline.from_settings(settings)
    generate(Path(pipeline.layout.generated_receipt(DATASET)).parent, seed=0, scale=settings.synthetic.scale)
    for stage in STAGE_NAMES:
        run_job(snakemake_job(pipeline, config, stage))
    return pipeline, settings


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_each_stage_writes_exactly_its_declared_outputs_and_a_verified_manifest(chain, stage):
    pipeline, settings = chain
    spec = STAGES[stage]
    variant = VARIANT if spec.per_variant else None
    stage_dir = Path(pipeline.layout.stage_dir(DATASET, variant, stage))
    written = sorted(str(p.relative_to(stage_dir)) for p in stage_dir.rglob("*") if p.is_file())
    manifest = load_manifest(stage_dir / "manifest.json", stage=stage, dataset=DATASET, variant=variant)  # verifies every sha256
    assert written == sorted(["manifest.json", *(entry["path"] for entry in manifest.data["artifacts"].values())])
    # the declared artifacts, and for preprocess every shard of its graph caches (canids.graphs.shards)
    shards = {shard_artifact(name, graph_set, k) for name in spec.artifacts if name.endswith("_graphs") for graph_set, paths in shard_paths(stage_dir / spec.artifacts[name]).items() for k in range(len(paths))}
    assert set(manifest.data["artifacts"]) == set(spec.artifacts) | shards and (stage != "preprocess" or shards)
    recorded = {k: v for k, v in manifest.data["hyperparameters"].items() if k not in ("batch_size_used", "decision_rule")}
    assert recorded == stage_settings(settings, stage, variant)
    assert [ref["stage"] for ref in manifest.data["upstream"]] == list(spec.reads)
    if spec.trains:
        assert not Path(pipeline.layout.resume_dir(DATASET, variant, stage)).exists(), "resume state removed on success"
    assert Path(pipeline.layout.log(DATASET, variant, stage)).read_text(), "the job's log holds its output"


def test_training_follows_the_typed_settings(chain):
    pipeline, settings = chain
    for stage in ("autoencoder", "curriculum"):
        metrics = load_manifest(pipeline.layout.file(DATASET, VARIANT, stage)).data["metrics"]
        assert metrics["epochs_run"] == settings.for_variant(stage, VARIANT).epochs == 2
    fusion = load_manifest(pipeline.layout.file(DATASET, VARIANT, "fusion")).data["metrics"]
    assert fusion["best_step"] <= settings.fusion.teacher.steps == 60


def test_evaluation_reports_validation_and_every_test_split(chain):
    pipeline, _ = chain
    metrics = json.loads(Path(pipeline.layout.file(DATASET, VARIANT, "evaluation", "metrics")).read_text())
    assert list(metrics["splits"]) == [VALIDATION, *TEST_SPLITS]
    for split in metrics["splits"].values():
        assert {"vgae", "gat", "fusion"} <= set(split) and split["fusion"]["n_windows"] > 0


def test_a_job_refuses_an_upstream_artifact_that_changed_after_planning(chain, tmp_path):
    """Defence in depth: the job itself verifies every upstream artifact by sha256 before work."""
    import shutil

    from canids.workflow.manifest import ManifestError

    pipeline, settings = chain
    copy = tmp_path / "root"
    shutil.copytree(pipeline.root, copy)
    config = {**TINY, "experiment_root": str(copy)}
    moved = Pipeline.from_settings(load_settings(config))
    ckpt = Path(moved.layout.file(DATASET, VARIANT, "autoencoder", "checkpoint"))
    ckpt.write_bytes(ckpt.read_bytes()[:-10])
    with pytest.raises(ManifestError, match=r"artifact 'checkpoint' .* does not match its manifest: expected sha256 [0-9a-f]{64}, found [0-9a-f]{64}"):
        run_job(snakemake_job(moved, config, "curriculum"))
