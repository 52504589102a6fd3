"""Snakemake script of every stage rule: run the stage (canids.workflow.jobs.run_job)."""

from canids.workflow.jobs import run_job

run_job(snakemake)  # noqa: F821 (Snakemake injects it)
