"""Snakemake script: raw captures -> graph caches + manifest (canids.workflow.preprocess)."""

from canids.workflow.logs import logged
from canids.workflow.preprocess import run_preprocess

with logged(snakemake.log[0]):
    run_preprocess(snakemake.wildcards.dataset, snakemake.config, snakemake.output.train, snakemake.output.test, snakemake.output.manifest)
