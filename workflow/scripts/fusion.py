"""Snakemake script: train the DQN fusion agent (canids.workflow.train.run_fusion)."""

from pathlib import Path

from canids.workflow.logs import logged, single_input
from canids.workflow.train import run_fusion

with logged(snakemake.log[0]):
    run_fusion(
        snakemake.wildcards.dataset,
        snakemake.wildcards.variant,
        snakemake.config,
        snakemake.input.preprocess,
        snakemake.input.autoencoder,
        snakemake.input.curriculum,
        Path(snakemake.output.ckpt),
        Path(snakemake.output.manifest),
        teacher_manifest=single_input(snakemake.input.teacher),
    )
