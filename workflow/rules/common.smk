# Config loading and validation, paths, and input functions shared by all rules.

import os

from snakemake.utils import min_version, validate

from canids.workflow.code_digest import stage_code_digest
from canids.workflow.dag import Pipeline
from canids.workflow.jobspec import check_job_specs

min_version("9.0")


configfile: os.path.join(workflow.basedir, "..", "config", "config.yaml")


# Job specs (--configfile jobs/X.json) first: their errors name the file and the field.
SOURCES = check_job_specs(
    config, workflow.overwrite_configfiles, workflow.config_settings.config
)
validate(config, schema="../schemas/config.schema.yaml")

PIPELINE = Pipeline.from_config(config, SOURCES)
ROOT = PIPELINE.root


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    variant=r"teacher|student|student_kd",
    stage=r"autoencoder|curriculum|fusion",


def default_targets():
    """Output files of every configured dataset x variant x training type."""
    return PIPELINE.targets()


def raw_inputs(wildcards):
    """Raw capture files of a dataset (or the synthetic generator's receipt)."""
    return PIPELINE.raw_inputs(wildcards.dataset)


def as_input(path):
    """A pinned artifact is used as it is on disk: no job may (re)build it."""
    return before_update(path) if PIPELINE.is_pinned(path) else path


def upstream(stage, artifact="manifest"):
    """Input function: an upstream stage's manifest or checkpoint (pinned or built here)."""

    def resolve(wildcards):
        return as_input(
            PIPELINE.upstream(
                wildcards.dataset, wildcards.get("variant"), stage, artifact
            )
        )

    return resolve


def teacher_of(stage, artifact="manifest"):
    """Input function: the teacher's same stage, for student_kd only."""

    def resolve(wildcards):
        paths = PIPELINE.teacher(wildcards.dataset, wildcards.variant, stage, artifact)
        return [as_input(p) for p in paths]

    return resolve


def settings_of(stage):
    def resolve(wildcards):
        return PIPELINE.settings(stage, wildcards.get("variant", "teacher"))

    return resolve
