"""Snakemake script: evaluate every detector on the test splits (canids.workflow.evaluate)."""

from pathlib import Path

from canids.workflow.evaluate import run_evaluation
from canids.workflow.logs import logged

with logged(snakemake.log[0]):
    out = snakemake.output
    run_evaluation(
        snakemake.wildcards.dataset,
        snakemake.wildcards.variant,
        snakemake.input.preprocess,
        snakemake.input.autoencoder,
        snakemake.input.curriculum,
        snakemake.input.fusion,
        Path(out.metrics),
        Path(out.manifest),
        Path(out.curves),
        Path(out.confusion),
        Path(out.training),
    )
