# Config loading and validation, paths, and input functions shared by all rules.

import os

from snakemake.utils import min_version, validate

from canids.workflow.dag import Pipeline

min_version("9.0")


configfile: os.path.join(workflow.basedir, "..", "config", "config.yaml")


validate(config, schema="../schemas/config.schema.yaml")

PIPELINE = Pipeline.from_config(config)
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


def upstream(stage, artifact="manifest"):
    """Input function: an upstream stage's manifest or checkpoint (pinned or built here)."""

    def resolve(wildcards):
        return PIPELINE.upstream(
            wildcards.dataset, wildcards.get("variant"), stage, artifact
        )

    return resolve


def teacher_of(stage, artifact="manifest"):
    """Input function: the teacher's same stage, for student_kd only."""

    def resolve(wildcards):
        return PIPELINE.teacher(wildcards.dataset, wildcards.variant, stage, artifact)

    return resolve


def settings_of(stage):
    def resolve(wildcards):
        return PIPELINE.settings(stage, wildcards.get("variant", "teacher"))

    return resolve
