# Config layers, the pipeline's shape (canids.shape) and input functions shared by all rules.

import os

from snakemake.utils import min_version

from canids.settings import to_plain
from canids.shape import STAGES, VARIANTS
from canids.study import RUN_PATTERN
from canids.workflow.code_digest import stage_code_digest
from canids.workflow.config import workflow_settings
from canids.workflow.dag import Pipeline
from canids.workflow.plan import plan_once

min_version("9.0")


configfile: os.path.join(workflow.basedir, "..", "config", "config.yaml")


# Every config layer checked against workflow/schemas (errors name the file and the field),
# --config strings given their declared types, the result typed once (canids.settings).
SETTINGS, SOURCES = workflow_settings(
    config, workflow.overwrite_configfiles, workflow.config_settings.config
)
PIPELINE = Pipeline.from_settings(SETTINGS, SOURCES)
LAYOUT = PIPELINE.layout


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    variant="|".join(VARIANTS),
    run=RUN_PATTERN,
    study=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


def default_targets():
    """Output files of every configured dataset x variant x training type (x study point),
    and a study's table."""
    return [*PIPELINE.targets(), *PIPELINE.study_targets()]


def raw_inputs(wildcards):
    """Raw capture files (their times are ignored: the data fingerprint in the manifest
    decides), or the synthetic generator's receipt."""
    plan_once(workflow, PIPELINE)
    spec = PIPELINE.catalog.get(wildcards.dataset)
    paths = PIPELINE.raw_inputs(wildcards.dataset)
    return paths if spec.generated else [ancient(p) for p in paths]


def as_input(path):
    """A pinned artifact is used as it is on disk: no job may (re)build it."""
    return before_update(path) if PIPELINE.is_pinned(path) else path


def stage_inputs(stage):
    """Input function: the manifest (and checkpoint) of every stage ``stage`` reads."""

    def resolve(wildcards):
        # current = the manifests agree (canids.workflow.plan)
        plan_once(workflow, PIPELINE)
        named = PIPELINE.inputs(
            wildcards.dataset, wildcards.get("variant"), stage, wildcards.run
        )
        return {name: as_input(path) for name, path in named.items()}

    return resolve


def teacher_of(stage):
    """Input function: the teacher's same stage, for a distilled variant only."""

    def resolve(wildcards):
        paths = PIPELINE.teacher(
            wildcards.dataset, wildcards.variant, stage, run=wildcards.run
        )
        return [as_input(p) for p in paths]

    return resolve


def settings_of(stage):
    """Param function: the resolved settings the stage runs with (a change re-runs it)."""

    def resolve(wildcards):
        return PIPELINE.settings_of(stage, wildcards.get("variant"), wildcards.run)

    return resolve


def stage_outputs(stage):
    """Named outputs of a stage: its manifest and every artifact it pins (canids.shape)."""
    names = ["manifest", *STAGES[stage].artifacts]
    return {n: LAYOUT.file("{dataset}", "{variant}", stage, n, "{run}") for n in names}


def stage_log(stage):
    return LAYOUT.log("{dataset}", "{variant}", stage, "{run}")


def stage_benchmark(stage):
    return LAYOUT.benchmark("{dataset}", "{variant}", stage, "{run}")


def resume_dir(stage):
    return LAYOUT.resume_dir("{dataset}", "{variant}", stage, "{run}")


def evaluation_figure(artifact, caption):
    """An evaluation figure, shown in `snakemake --report` under its dataset and variant."""
    return report(
        LAYOUT.file("{dataset}", "{variant}", "evaluation", artifact, "{run}"),
        category="{dataset}",
        subcategory="{variant}{run}",
        caption=caption,
    )
