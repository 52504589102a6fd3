"""Snakemake script: train the VGAE autoencoder (canids.workflow.train.run_autoencoder)."""

from pathlib import Path

from canids.workflow.logs import logged, single_input
from canids.workflow.train import run_autoencoder

with logged(snakemake.log[0]):
    run_autoencoder(
        snakemake.wildcards.dataset,
        snakemake.wildcards.variant,
        snakemake.config,
        snakemake.input.preprocess,
        Path(snakemake.output.ckpt),
        Path(snakemake.output.manifest),
        resume_dir=Path(snakemake.params.resume_dir),
        teacher_manifest=single_input(snakemake.input.teacher),
    )
